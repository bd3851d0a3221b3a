/*
 * generate.h - the `mpitrain generate` command: samples tokens from a
 * GPT checkpoint on one process, without MPI.
 *
 *   mpitrain generate --checkpoint FILE [--prompt TEXT | --prompt-tokens IDS]
 *                     [--tokens N] [--temperature T] [--top-k K] [--seed S]
 *
 * stdout carries only the text (raw bytes for byte-level models, else
 * comma-separated token ids), so it can be piped; notes go to stderr.
 */
#ifndef MT_CLI_GENERATE_H
#define MT_CLI_GENERATE_H

/* argv[0] is "generate". Returns the exit status: 0, 2 (usage, or not a GPT
 * checkpoint), 4 (corrupt or unreadable checkpoint), 6 (non-finite logits). */
int mt_cli_generate(int argc, char **argv);

#endif
