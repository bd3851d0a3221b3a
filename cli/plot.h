/*
 * plot.h - the `mpitrain plot` command: pictures of runs. Reads the
 * metrics.jsonl of one or more run folders and draws, against step, the
 * loss (train, and validation where evaluated), the learning rate, the
 * throughput and the gradient norm into one PNG, every run in its own
 * colour, through gnuplot's pngcairo terminal (Debian gnuplot-nox).
 *
 *   mpitrain plot RUN_DIR... --out FILE.png [--title T]
 *
 * No MPI; runs beside a job that is still writing its metrics.
 */
#ifndef MT_CLI_PLOT_H
#define MT_CLI_PLOT_H

/* argv[0] is "plot". Returns the exit status: 0, 2 (usage, an unwritable
 * --out, gnuplot missing or failing) or 3 (a run without readable metrics). */
int mt_cli_plot(int argc, char **argv);

#endif
