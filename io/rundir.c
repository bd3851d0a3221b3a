/* rundir.c - run folders and run ids (see rundir.h). */
#include "rundir.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/files.h"

int mt_rundir_create(const char *dir, const char *name, char *out, size_t out_len, mt_err *e) {
    char parent[MT_PATH_LEN];
    if (mt_path_fmt(parent, sizeof parent, e, "%s/%s", dir, name) || mt_mkdirs(parent, e))
        return e->code;
    for (int i = 1; i < 100000; i++) {
        if (mt_path_fmt(out, out_len, e, "%s/%04d", parent, i)) return e->code;
        if (mkdir(out, 0777) == 0) return MT_OK;
        if (errno != EEXIST)
            return mt_err_set(e, MT_ERR_USAGE, "cannot create run folder %s: %s", out,
                              strerror(errno));
    }
    return mt_err_set(e, MT_ERR_USAGE, "no free run folder number under %s", parent);
}

void mt_uuid4(char out[37]) {
    unsigned char b[16];
    if (getrandom(b, sizeof b, 0) != (ssize_t)sizeof b) {
        /* Entropy unavailable: fall back to time and pid, still unique enough to name a run. */
        unsigned long long t =
            (unsigned long long)time(NULL) ^ ((unsigned long long)getpid() << 32);
        for (int i = 0; i < 16; i++) b[i] = (unsigned char)(t >> ((i % 8) * 8)) ^ (unsigned char)i;
    }
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
    snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0],
             b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13],
             b[14], b[15]);
}
