/*
 * export.h - `mpitrain export --format safetensors|llmc CKPT OUT [--force]`:
 * a trained model out of mpitrain, for the Hugging Face / PyTorch world or
 * llm.c (docs/EXPORT.md).
 */
#ifndef MT_CLI_EXPORT_H
#define MT_CLI_EXPORT_H

/* argv[0] is "export". Returns the exit status. */
int mt_cli_export(int argc, char **argv);

#endif
