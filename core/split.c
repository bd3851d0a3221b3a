/* split.c - layers to pipeline stages, tensor-parallel place (see split.h). */
#include "split.h"

#include <float.h>
#include <stdlib.h>
#include <string.h>

void mt_split_whole(mt_split *s, int layers) {
    memset(s, 0, sizeof *s);
    s->tp = s->pp = 1;
    s->tpx = NULL;
    s->first[1] = layers;
}

/* Contiguous stages minimising the largest stage cost (each >= 1 layer),
 * by dynamic programming over (stages used, layers covered); ties go to
 * the earliest cut, so every rank computes the same split. */
static int balance(const double *cost, int n, int P, double fx, double lx, int *first) {
    double *pre = calloc((size_t)n + 1, sizeof *pre);
    double *best = malloc((size_t)(P + 1) * (size_t)(n + 1) * sizeof *best);
    int *cut = malloc((size_t)(P + 1) * (size_t)(n + 1) * sizeof *cut);
    if (!pre || !best || !cut) {
        free(pre), free(best), free(cut);
        return -1;
    }
    for (int i = 0; i < n; i++) pre[i + 1] = pre[i] + cost[i];
#define B(k, i) best[(size_t)(k) * (size_t)(n + 1) + (size_t)(i)]
#define C(k, i) cut[(size_t)(k) * (size_t)(n + 1) + (size_t)(i)]
    for (int k = 0; k <= P; k++)
        for (int i = 0; i <= n; i++) B(k, i) = DBL_MAX, C(k, i) = 0;
    B(0, 0) = 0.0;
    for (int k = 1; k <= P; k++)
        for (int i = k; i <= n - (P - k); i++)
            for (int j = k - 1; j < i; j++) { /* stage k-1 holds layers [j, i) */
                if (B(k - 1, j) == DBL_MAX) continue;
                double c = pre[i] - pre[j] + (k == 1 ? fx : 0.0) + (k == P ? lx : 0.0);
                double worst = c > B(k - 1, j) ? c : B(k - 1, j);
                if (worst < B(k, i)) B(k, i) = worst, C(k, i) = j;
            }
    first[P] = n;
    for (int k = P; k >= 1; k--) first[k - 1] = C(k, first[k]);
#undef B
#undef C
    free(pre), free(best), free(cut);
    return 0;
}

int mt_split_make(mt_split *s, const mt_comm *c, const mt_config *cfg, int layers,
                  const double *cost, double first_extra, double last_extra, mt_err *e) {
    mt_split_whole(s, layers);
    s->tp = c->tp_size;
    s->tp_rank = c->tp_rank;
    s->tpx = c->tp_size > 1 ? &c->xtp : NULL;
    s->pp = c->pp_size;
    s->stage = c->pp_rank;
    if (s->pp > MT_PP_MAX)
        return mt_err_set(e, MT_ERR_USAGE, "parallel.pp = %d is more than %d stages", s->pp,
                          MT_PP_MAX);
    if (s->pp > layers) {
        mt_err_set(e, MT_ERR_USAGE,
                   "parallel.pp = %d pipeline stages but the model has only %d layers (each stage "
                   "needs at least one)",
                   s->pp, layers);
        mt_err_hint(e, "use parallel.pp <= %d", layers);
        return e->code;
    }
    const mt_cfg_intlist *sl = &cfg->parallel.stage_layers;
    if (!(sl->n == 1 && sl->v[0] == 0)) { /* validated: pp entries summing to layers */
        s->first[0] = 0;
        for (int k = 0; k < s->pp; k++) s->first[k + 1] = s->first[k] + (int)sl->v[k];
        return MT_OK;
    }
    if (balance(cost, layers, s->pp, first_extra, last_extra, s->first))
        return mt_err_set(e, MT_ERR_INTERNAL, "out of memory splitting the pipeline");
    return MT_OK;
}

int mt_split_stage_of(const mt_split *s, int l) {
    int k = 0;
    while (k + 1 < s->pp && l >= s->first[k + 1]) k++;
    return k;
}

void mt_split_tp_sum(const mt_split *s, float *buf, size_t n) {
    if (s->tp > 1) mt_xcomm_sum(s->tpx, buf, n);
}
