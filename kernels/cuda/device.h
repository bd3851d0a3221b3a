/*
 * device.h - which GPU a rank uses, and the CUDA library versions.
 */
#ifndef MT_CUDA_DEVICE_H
#define MT_CUDA_DEVICE_H

#include <stddef.h>

/* Makes device (local_rank mod the visible devices) current; desc gets
 * "GPU i of n: <name>, <MiB> MiB, PCI <bus id>". Returns the index, or -1
 * with the reason in desc. */
int mt_cuda_select(int local_rank, char *desc, size_t n);
/* "<host>/<PCI bus id>" of the current device: equal on two ranks exactly
 * when they share a GPU. */
void mt_cuda_device_uid(char *buf, size_t n);
/* Versions as "major.minor[.patch]"; driver "" when there is none. */
void mt_cuda_versions(char *runtime, char *driver, char *cublas, size_t n);

#endif
