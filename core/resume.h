/*
 * resume.h - choosing the checkpoint a run continues from, and deciding
 * whether it fits the run's configuration.
 *
 * checkpoint.resume = none starts at step 0; auto takes the newest valid
 * checkpoint of this run (checkpoint.dir when set, else the checkpoints/
 * folders of run.dir/run.name/NNNN, newest run folder first), falling back
 * past corrupt files and saying so; a path names a file (or a checkpoint
 * folder, meaning its `latest`) that must verify. What may differ between
 * the checkpoint's config and the run's is in docs/TRAINING.md; the
 * architecture, optimizer kind, seed, global batch and shuffle may not.
 */
#ifndef MT_RESUME_H
#define MT_RESUME_H

#include <stdio.h>

#include "core/config.h"
#include "core/params.h"
#include "io/checkpoint.h"

/*
 * One process (rank 0). Sets path to the verified checkpoint to continue
 * from ("" for a fresh start) and fills info for it. Notes and warnings go
 * to out. Errors are MT_ERR_CKPT.
 */
int mt_resume_find(const mt_config *cfg, char *path, size_t n, mt_ckpt_info *info, FILE *out,
                   mt_err *e);

/*
 * One process. Errors (MT_ERR_CKPT, naming the key) if the checkpoint's
 * config disagrees with cfg in a key that cannot change on resume, or its
 * tensors do not match p; prints the keys that did change to out.
 */
int mt_resume_check(const mt_config *cfg, const mt_params *p, const char *path,
                    const mt_ckpt_info *info, FILE *out, mt_err *e);

/* The configuration stored in the verified checkpoint path (info from
 * mt_ckpt_verify), parsed and validated into cfg. MT_ERR_CKPT naming the
 * file otherwise. */
int mt_resume_config_of(const char *path, const mt_ckpt_info *info, mt_config *cfg, mt_err *e);

/* The folder checkpoints of a run go to (checkpoint.dir or RUN_DIR/checkpoints). */
int mt_resume_ckpt_dir(const mt_config *cfg, const char *run_dir, char *out, size_t n, mt_err *e);

#endif
