/*
 * ckpt.h - the `mpitrain ckpt ...` command: looks into checkpoint files
 * on one process, without MPI.
 *
 *   mpitrain ckpt inspect FILE         position, identity, config, tensors
 *   mpitrain ckpt verify FILE [FILE...] exit 0 if every file is intact
 */
#ifndef MT_CLI_CKPT_H
#define MT_CLI_CKPT_H

/* argv[0] is "ckpt". Returns the exit status: 0, 2 (usage) or 4 (corrupt). */
int mt_cli_ckpt(int argc, char **argv);

#endif
