/*
 * gpt_parity.c - runs the GPT model (core/gpt.c) with AdamW for a few steps
 * on fixed token batches and writes everything an independent implementation
 * needs to repeat the run into one HDF5 file, for tests/reference/gpt_parity.py
 * (PyTorch) to compare:
 *   /config attributes n_layer, n_head, n_embd, block_size, vocab_size, lr,
 *           beta1, beta2, eps, weight_decay, steps
 *   /init/<param>   parameters before the first step (float32, PyTorch names)
 *   /final/<param>  parameters after the last step
 *   /x, /y          (steps, B, T) int32 input and target tokens of each step
 *   /losses         (steps) float64 mean token loss of each step (before its update)
 *
 * usage: gpt_parity OUT.h5 [steps] [fused]
 *   fused: the model and AdamW run the backend's fused ops (train.fused);
 *   the run must then fail on a backend without them (it would test
 *   nothing new).
 */
#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/config.h"
#include "core/gpt.h"
#include "core/optim.h"
#include "base/rng.h"
#include "io/h5util.h"

enum { NL = 2, NH = 4, NC = 32, BS = 16, V = 67, B = 4, T = 16 };

static int write_params(hid_t f, const char *group, const mt_params *p, mt_err *e) {
    char path[160];
    for (int i = 0; i < p->n && !e->code; i++) {
        hsize_t dims[MT_PARAM_MAX_DIMS];
        for (int d = 0; d < p->v[i].ndim; d++) dims[d] = (hsize_t)p->v[i].shape[d];
        snprintf(path, sizeof path, "/%s/%s", group, p->v[i].name);
        mt_h5_write(f, path, H5T_NATIVE_FLOAT, p->data + p->v[i].offset, p->v[i].ndim, dims, e);
    }
    return e->code;
}

static void attr_double(hid_t f, const char *name, double v) {
    hid_t sp = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(f, name, H5T_NATIVE_DOUBLE, sp, H5P_DEFAULT, H5P_DEFAULT);
    H5Awrite(a, H5T_NATIVE_DOUBLE, &v);
    H5Aclose(a);
    H5Sclose(sp);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: gpt_parity OUT.h5 [steps]\n");
        return 2;
    }
    int steps = argc > 2 ? atoi(argv[2]) : 10;
    int fused = argc > 3 && strcmp(argv[3], "fused") == 0;
    if (steps < 1 || steps > 1000 || (argc > 3 && !fused)) return 2;
    const mt_backend *be = mt_backend_cpu();
    mt_err e = {0};
    mt_config cfg;
    mt_config_defaults(&cfg);
    cfg.optim.kind = MT_OPTIM_ADAMW;
    cfg.optim.lr = 3e-3;
    cfg.optim.beta1 = 0.9;
    cfg.optim.beta2 = 0.95;
    cfg.optim.eps = 1e-8;
    cfg.optim.weight_decay = 0.1;
    cfg.train.fused = fused;
    mt_gpt_config gc = {NL, NH, NC, BS, V, 0.0f, 0, fused, 1};
    mt_params p;
    mt_gpt m;
    mt_optim o;
    mt_params_init(&p);
    if (mt_gpt_build(&m, &gc, &p, &e) || mt_params_alloc(&p, &e) ||
        mt_gpt_alloc(&m, be, B, T, &e) || mt_optim_init(&o, &cfg, &p, be, NULL, &e)) {
        fprintf(stderr, "gpt_parity: %s\n", e.msg);
        return 1;
    }
    if (fused && !(m.use.flash && m.use.resln && m.use.gelu && m.use.xent && o.multi)) {
        fprintf(stderr,
                "gpt_parity: the backend lacks fused ops (flash %d, resln %d, gelu %d, "
                "xent %d, adamw_multi %d)\n",
                m.use.flash, m.use.resln, m.use.gelu, m.use.xent, o.multi);
        return 1;
    }
    mt_params_init_values(&p, 1234);
    mt_h5_quiet();
    hid_t f = mt_h5_create(argv[1], &e);
    if (f < 0 || write_params(f, "init", &p, &e)) {
        fprintf(stderr, "gpt_parity: %s\n", e.msg);
        return 1;
    }
    int32_t *x = malloc(sizeof(int32_t) * (size_t)steps * B * T);
    int32_t *y = malloc(sizeof(int32_t) * (size_t)steps * B * T);
    double *losses = malloc(sizeof(double) * (size_t)steps);
    /* token batches with some structure (a noisy repeating pattern), so the
     * loss falls over the steps */
    for (size_t i = 0; i < (size_t)steps * B * (T + 1); i++) {
        size_t s = i / ((size_t)B * (T + 1)), r = i % ((size_t)B * (T + 1));
        size_t b = r / (T + 1), t = r % (T + 1);
        int32_t tok = (int32_t)((b * 7 + t * 3 + s) % V);
        if (mt_rng_uniform(9, 1, i) < 0.2f) tok = (int32_t)mt_rng_below(9, 2, i, V);
        if (t < T) x[(s * B + b) * T + t] = tok;
        if (t > 0) y[(s * B + b) * T + t - 1] = tok;
    }
    for (int s = 0; s < steps; s++) {
        const int32_t *xs = x + (size_t)s * B * T, *ys = y + (size_t)s * B * T;
        double sum = mt_gpt_forward(&m, be, &p, xs, ys, B, T, NULL);
        mt_gpt_backward(&m, be, &p, xs, ys, 1.0f / (B * T), 0);
        losses[s] = sum / (B * T);
        mt_optim_step(&o, &p, be, (float)cfg.optim.lr);
        printf("step %2d loss %.6f\n", s + 1, losses[s]);
    }
    hsize_t dims[3] = {(hsize_t)steps, B, T}, n = (hsize_t)steps;
    mt_h5_write(f, "/x", H5T_NATIVE_INT32, x, 3, dims, &e);
    mt_h5_write(f, "/y", H5T_NATIVE_INT32, y, 3, dims, &e);
    mt_h5_write(f, "/losses", H5T_NATIVE_DOUBLE, losses, 1, &n, &e);
    write_params(f, "final", &p, &e);
    const struct {
        const char *name;
        double v;
    } attrs[] = {{"n_layer", NL},
                 {"n_head", NH},
                 {"n_embd", NC},
                 {"block_size", BS},
                 {"vocab_size", V},
                 {"lr", cfg.optim.lr},
                 {"beta1", cfg.optim.beta1},
                 {"beta2", cfg.optim.beta2},
                 {"eps", cfg.optim.eps},
                 {"weight_decay", cfg.optim.weight_decay},
                 {"steps", steps}};
    for (size_t i = 0; i < sizeof attrs / sizeof attrs[0]; i++)
        attr_double(f, attrs[i].name, attrs[i].v);
    H5Fclose(f);
    free(x);
    free(y);
    free(losses);
    mt_optim_free(&o, be);
    mt_gpt_free(&m, be);
    mt_params_free(&p);
    if (e.code) fprintf(stderr, "gpt_parity: %s\n", e.msg);
    return e.code ? 1 : 0;
}
