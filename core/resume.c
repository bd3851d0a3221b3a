/* resume.c - which checkpoint to continue from, and does it fit (see resume.h). */
#include "resume.h"

#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/models.h"
#include "io/files.h"

/* Keys a resumed run must share with its checkpoint: they define the
 * tensors, the optimizer state, and the sample order. */
/* data.tokenizer may go from "ids" (not said: every checkpoint before the
 * key) to a named tokenizer (the config's own check then holds it to the
 * model's vocabulary), never between two named ones. */
static int tokenizer_named_now(const mt_cfg_key *k, const char *was) {
    return strcmp(k->section, "data") == 0 && strcmp(k->key, "tokenizer") == 0 &&
           strcmp(was, "ids") == 0;
}

static int locked(const mt_cfg_key *k) {
    static const char *keys[] = {"optim.kind", "train.global_batch", "train.shuffle", "run.seed",
                                 "data.tokenizer"};
    /* (model.vocab_pad is memory layout only: no file holds the padding) */
    if (strcmp(k->section, "model") == 0) return strcmp(k->key, "vocab_pad") != 0;
    char full[96];
    snprintf(full, sizeof full, "%s.%s", k->section, k->key);
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
        if (strcmp(full, keys[i]) == 0) return 1;
    return 0;
}

int mt_resume_ckpt_dir(const mt_config *cfg, const char *run_dir, char *out, size_t n, mt_err *e) {
    if (cfg->checkpoint.dir[0]) return mt_path_fmt(out, n, e, "%s", cfg->checkpoint.dir);
    return mt_path_fmt(out, n, e, "%s/checkpoints", run_dir);
}

/* Tries the checkpoints of dir, newest first (from the one `latest` names,
 * when it names one). Returns 1 when one verified, 0 when none did. */
static int try_dir(const char *dir, char *path, size_t n, mt_ckpt_info *info, int *tried, FILE *out,
                   mt_err *e) {
    int64_t *steps;
    int count;
    if (mt_ckpt_list(dir, &steps, &count, e)) return 0;
    char latest[300];
    mt_ckpt_latest(dir, latest, sizeof latest);
    int64_t top = latest[0] ? mt_ckpt_parse_name(latest) : -1;
    int found = 0;
    if (latest[0]) {
        int present = 0;
        for (int i = 0; i < count; i++) present |= steps[i] == top;
        if (!present) {
            fprintf(out, "warning: %s/latest names %s, which is missing\n", dir, latest);
            top = -1;
        }
    }
    for (int i = count - 1; i >= 0 && !found; i--) {
        if (top >= 0 && steps[i] > top) continue; /* not yet committed by `latest` */
        char name[64];
        mt_ckpt_name(steps[i], name, sizeof name);
        if (mt_path_fmt(path, n, e, "%s/%s", dir, name)) break;
        mt_err why = {0};
        (*tried)++;
        if (!mt_ckpt_verify(path, 0, info, &why)) {
            found = 1;
            if (*tried > 1)
                fprintf(out, "resume: falling back to the newest valid checkpoint, %s\n", path);
        } else {
            fprintf(out, "warning: skipping unusable checkpoint: %s\n", why.msg);
            mt_ckpt_info_free(info);
        }
    }
    free(steps);
    if (!found) path[0] = '\0';
    return found;
}

static int cmp_desc(const void *a, const void *b) {
    long x = *(const long *)a, y = *(const long *)b;
    return (x < y) - (x > y);
}

static int find_auto(const mt_config *cfg, char *path, size_t n, mt_ckpt_info *info, FILE *out,
                     mt_err *e) {
    int tried = 0;
    char where[MT_PATH_LEN + 16];
    if (cfg->checkpoint.dir[0]) {
        snprintf(where, sizeof where, "%s", cfg->checkpoint.dir);
        try_dir(cfg->checkpoint.dir, path, n, info, &tried, out, e);
    } else {
        /* the run folders of this run name, newest (highest number) first */
        char parent[MT_PATH_LEN];
        if (mt_path_fmt(parent, sizeof parent, e, "%s/%s", cfg->run.dir, cfg->run.name))
            return e->code;
        snprintf(where, sizeof where, "%s/*/checkpoints", parent);
        long *nums = NULL;
        int count = 0, cap = 0;
        DIR *d = opendir(parent);
        for (struct dirent *de; d && (de = readdir(d));) {
            char *end;
            long v = strtol(de->d_name, &end, 10);
            if (*end || end == de->d_name || de->d_name[0] < '0' || de->d_name[0] > '9') continue;
            if (count == cap) {
                cap = cap ? 2 * cap : 16;
                long *nn = realloc(nums, (size_t)cap * sizeof *nn);
                if (!nn) abort();
                nums = nn;
            }
            nums[count++] = v;
        }
        if (d) closedir(d);
        if (count) qsort(nums, (size_t)count, sizeof *nums, cmp_desc);
        for (int i = 0; i < count && !path[0] && !e->code; i++) {
            char dir[MT_PATH_LEN];
            if (!mt_path_fmt(dir, sizeof dir, e, "%s/%04ld/checkpoints", parent, nums[i]))
                try_dir(dir, path, n, info, &tried, out, e);
        }
        free(nums);
    }
    if (e->code) return e->code;
    if (!path[0] && tried) {
        mt_err_set(e, MT_ERR_CKPT,
                   "checkpoint.resume = auto: none of the %d checkpoint(s) in %s is usable", tried,
                   where);
        mt_err_hint(e, "the warnings above say what is wrong with each; set checkpoint.resume = "
                       "none to start over");
        return e->code;
    }
    if (!path[0]) fprintf(out, "resume: no checkpoint in %s; starting at step 0\n", where);
    return MT_OK;
}

int mt_resume_find(const mt_config *cfg, char *path, size_t n, mt_ckpt_info *info, FILE *out,
                   mt_err *e) {
    const char *r = cfg->checkpoint.resume;
    path[0] = '\0';
    memset(info, 0, sizeof *info);
    if (strcmp(r, "none") == 0) return MT_OK;
    if (strcmp(r, "auto") == 0) return find_auto(cfg, path, n, info, out, e);
    struct stat st;
    if (stat(r, &st) == 0 && S_ISDIR(st.st_mode)) {
        char latest[300];
        mt_ckpt_latest(r, latest, sizeof latest);
        if (!latest[0])
            return mt_err_set(e, MT_ERR_CKPT,
                              "checkpoint.resume = %s is a folder without a valid 'latest' file",
                              r);
        if (mt_path_fmt(path, n, e, "%s/%s", r, latest)) return e->code;
    } else {
        snprintf(path, n, "%s", r);
    }
    if (mt_ckpt_verify(path, 0, info, e)) {
        mt_err_hint(e, "checkpoint.resume = auto falls back to older valid checkpoints");
        path[0] = '\0';
    }
    return e->code;
}

int mt_resume_check(const mt_config *cfg, const mt_params *p, const char *path,
                    const mt_ckpt_info *info, FILE *out, mt_err *e) {
    mt_config ck;
    mt_config_defaults(&ck);
    mt_err perr = {0};
    if (mt_config_parse(&ck, info->config_text, path, &perr))
        return mt_err_set(e, MT_ERR_CKPT, "the config stored in checkpoint %s does not parse: %s",
                          path, perr.msg);
    char a[MT_CFG_STR_LEN * 2], b[MT_CFG_STR_LEN * 2];
    int changed = 0;
    for (const mt_cfg_key *k = mt_cfg_keys; k->section; k++) {
        mt_config_value(&ck, k, a, sizeof a);
        mt_config_value(cfg, k, b, sizeof b);
        if (strcmp(a, b) == 0) continue;
        if (locked(k) && !tokenizer_named_now(k, a)) {
            if (changed) fprintf(out, "\n"); /* every message ends its line */
            mt_err_set(e, MT_ERR_CKPT,
                       "checkpoint %s does not fit the config: %s.%s is %s in the checkpoint "
                       "but %s in the config",
                       path, k->section, k->key, a, b);
            mt_err_hint(e, "the model, optim.kind, run.seed, train.global_batch, train.shuffle and "
                           "a named data.tokenizer cannot change on resume (docs/TRAINING.md)");
            return e->code;
        }
        if (strcmp(k->section, "checkpoint") == 0 && strcmp(k->key, "resume") == 0) continue;
        fprintf(out, "%s %s.%s %s -> %s",
                changed++ ? "," : "resume: changed since the checkpoint:", k->section, k->key,
                a[0] ? a : "\"\"", b[0] ? b : "\"\"");
    }
    if (changed) fprintf(out, "\n");
    /* The config decides the tensors; check them too, in case the file was edited. */
    int nmodel = 0;
    for (int i = 0; i < info->n_tensors; i++)
        nmodel += strncmp(info->tensors[i].path, "/model/", 7) == 0;
    for (int i = 0; i < p->n; i++) {
        const mt_param *t = &p->v[i];
        const mt_ckpt_tensor *ct = NULL;
        for (int j = 0; j < info->n_tensors && !ct; j++)
            if (strncmp(info->tensors[j].path, "/model/", 7) == 0 &&
                strcmp(info->tensors[j].path + 7, t->name) == 0)
                ct = &info->tensors[j];
        int same = ct && ct->ndim == t->ndim;
        for (int d = 0; same && d < t->ndim; d++) same = ct->shape[d] == t->shape[d];
        if (!same)
            return mt_err_set(e, MT_ERR_CKPT,
                              "checkpoint %s does not fit the model: tensor %s is %s", path,
                              t->name, ct ? "of another shape" : "missing");
    }
    if (nmodel != p->n)
        return mt_err_set(e, MT_ERR_CKPT,
                          "checkpoint %s holds %d weight tensors but the model has %d", path,
                          nmodel, p->n);
    return MT_OK;
}

int mt_resume_config_of(const char *path, const mt_ckpt_info *info, mt_config *cfg, mt_err *e) {
    mt_config_defaults(cfg);
    mt_err perr = {0};
    if (mt_config_parse(cfg, info->config_text, path, &perr) || mt_config_validate(cfg, &perr) ||
        mt_model_check(cfg, &perr))
        return mt_err_set(e, MT_ERR_CKPT, "the config stored in checkpoint %s is invalid: %s", path,
                          perr.msg);
    return MT_OK;
}
