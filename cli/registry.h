/*
 * registry.h - the `mpitrain registry ...` command: model versions,
 * aliases, lineage, artifact checks and OpenLineage export of a registry
 * file, on one process, without MPI.
 */
#ifndef MT_CLI_REGISTRY_H
#define MT_CLI_REGISTRY_H

/* argv[0] is "registry". Returns the exit status (0, 2, 4 or 7). */
int mt_cli_registry(int argc, char **argv);

#endif
