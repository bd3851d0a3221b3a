/* gpt_memory.c - the GPT's activation memory (see gpt.h): which
 * activations a forward keeps for its backward, the scratch buffers one
 * block computes in, their allocation, sharing between clones (pipeline
 * micro-batches in flight) and the start-up estimate of their size. */
#include <stdlib.h>
#include <string.h>

#include "core/gpt.h"
#include "kernels/backends.h"

#define ALLOC(ptr, n) bad |= !((ptr) = be->alloc(n))

size_t mt_gpt_grad16_numel(const mt_gpt *m, size_t N) {
    /* the widest gradient a product reads: dfch (N, 4 Cl), or a
     * row-parallel output's (N, C), wider when tp > 4 (Cl = C / tp) */
    size_t C = (size_t)m->cfg.n_embd, H = 4 * (size_t)m->Cl;
    return N * (H > C ? H : C);
}

/* The activations one forward keeps for its backward. */
static int alloc_stored(mt_gpt *m, const mt_backend *be) {
    const mt_gpt_config *c = &m->cfg;
    size_t N = (size_t)m->max_B * (size_t)m->max_T, C = (size_t)c->n_embd,
           V = (size_t)mt_gpt_vocab_padded(c); /* (the logits' columns, padding included) */
    size_t Cl = (size_t)m->Cl, TT = (size_t)m->max_B * (size_t)m->NHl * (size_t)m->max_T * m->max_T;
    size_t lse = (size_t)m->max_B * (size_t)m->NHl * (size_t)m->max_T; /* flash: att's stand-in */
    int bad = 0;
    /* bf16 storage: n values in (n + 1) / 2 floats */
#define PACKED(n) (c->act_bf16 ? ((n) + 1) / 2 : (n))
    for (int l = m->l0; l < m->l1; l++) {
        mt_gpt_block *b = &m->block[l];
        ALLOC(b->ln1, PACKED(N * C)), ALLOC(b->ln1_mean, N), ALLOC(b->ln1_rstd, N);
        ALLOC(b->qkv, PACKED(N * 3 * Cl)), ALLOC(b->atty, PACKED(N * Cl));
        ALLOC(b->att, m->use.flash ? lse : PACKED(TT));
        ALLOC(b->res2, PACKED(N * C)), ALLOC(b->ln2, PACKED(N * C)), ALLOC(b->ln2_mean, N);
        ALLOC(b->ln2_rstd, N), ALLOC(b->fch, PACKED(N * 4 * Cl));
        ALLOC(b->fch_gelu, PACKED(N * 4 * Cl));
        ALLOC(b->res3, N * C);
    }
#undef PACKED
    if (m->first) ALLOC(m->encoded, N * C);
    if (m->last) {
        ALLOC(m->lnf, N * C), ALLOC(m->lnf_mean, N), ALLOC(m->lnf_rstd, N);
        ALLOC(m->logits, N * V);
        if (!m->use.xent) ALLOC(m->probs, N * V);
    }
    return bad;
}

int mt_gpt_alloc(mt_gpt *m, const mt_backend *be, int max_B, int max_T, mt_err *e) {
    const mt_gpt_config *c = &m->cfg;
    if (max_T > c->block_size)
        return mt_err_set(e, MT_ERR_USAGE, "sequence length %d exceeds model.block_size = %d",
                          max_T, c->block_size);
    m->max_B = max_B;
    m->max_T = max_T;
    int f = c->fused;               /* (the names of gpt's fused_ops below) */
    int hs = c->n_embd / c->n_head; /* (a backend's flash ops may not take every head size) */
    m->use.flash = f && mt_backend_flash_takes(be, hs);
    m->use.resln = f && mt_backend_has_fused(be, "residual_layernorm");
    m->use.gelu = f && mt_backend_has_fused(be, "bias_gelu");
    m->use.xent = f && mt_backend_has_fused(be, "xent");
    m->use.mm_bias = f && mt_backend_has_fused(be, "matmul_bias");
    m->use.mm_gelu = f && mt_backend_has_fused(be, "matmul_bias_gelu");
    m->use.mm_dgelu = f && mt_backend_has_fused(be, "matmul_dgelu");
    m->use.mm_wgrad = f && mt_backend_has_fused(be, "matmul_wgrad_bgrad");
    m->use.mm16 = mt_gpt_wants_bf16_products(c, be);
    size_t N = (size_t)max_B * (size_t)max_T, C = (size_t)c->n_embd, Cl = (size_t)m->Cl;
    size_t TT = (size_t)max_B * (size_t)m->NHl * (size_t)max_T * (size_t)max_T;
    int bad = alloc_stored(m, be);
    ALLOC(m->dres, N * C), ALLOC(m->dtmp, N * C), ALLOC(m->dbranch, N * C);
    ALLOC(m->dqkv, N * 3 * Cl), ALLOC(m->dfch, N * 4 * Cl);
    if (!m->use.flash) ALLOC(m->datt, TT);
    if (c->act_bf16) { /* the fp32 working copy of one block (flash: lse stays the block's) */
        mt_gpt_block *w = &m->w;
        ALLOC(w->ln1, N * C), ALLOC(w->qkv, N * 3 * Cl), ALLOC(w->atty, N * Cl);
        if (!m->use.flash) ALLOC(w->att, TT);
        ALLOC(w->res2, N * C), ALLOC(w->ln2, N * C), ALLOC(w->fch, N * 4 * Cl);
        ALLOC(w->fch_gelu, N * 4 * Cl);
    }
    if (m->use.mm16) { /* bf16 products: a gradient's bf16 copy; ln_f's (the LM head's input) */
        ALLOC(m->d16, (mt_gpt_grad16_numel(m, N) + 1) / 2);
        if (m->last) ALLOC(m->lnf16, (N * C + 1) / 2);
    }
    if (bad)
        return mt_err_set(e, MT_ERR_INTERNAL,
                          "out of memory for the GPT activations (batch %d x %d tokens)", max_B,
                          max_T);
    return MT_OK;
}

/* Applies f to every stored-activation pointer of m (each block's, then the
 * model's own): the one list the clone clears and free releases. */
static void each_stored(mt_gpt *m, void (*f)(float **, const mt_backend *), const mt_backend *be) {
    for (int l = 0; m->block && l < m->cfg.n_layer; l++) {
        mt_gpt_block *b = &m->block[l];
        float **p[] = {&b->ln1, &b->ln1_mean, &b->ln1_rstd, &b->qkv,      &b->atty,
                       &b->att, &b->res2,     &b->ln2,      &b->ln2_mean, &b->ln2_rstd,
                       &b->fch, &b->fch_gelu, &b->res3};
        for (size_t i = 0; i < sizeof p / sizeof p[0]; i++) f(p[i], be);
    }
    float **p[] = {&m->encoded, &m->lnf, &m->lnf_mean, &m->lnf_rstd, &m->logits, &m->probs};
    for (size_t i = 0; i < sizeof p / sizeof p[0]; i++) f(p[i], be);
}

static void forget(float **x, const mt_backend *be) {
    (void)be;
    *x = NULL;
}

static void release(float **x, const mt_backend *be) {
    if (*x) be->free(*x);
    *x = NULL;
}

int mt_gpt_clone(mt_gpt *dst, const mt_gpt *src, const mt_backend *be, mt_err *e) {
    *dst = *src; /* the parameter indices and shapes; then activations of its own */
    dst->owns_scratch = 0;
    dst->block = NULL;
    each_stored(dst, forget, be); /* src's model-level activations are not dst's to free */
    dst->block = malloc((size_t)src->cfg.n_layer * sizeof *dst->block);
    if (!dst->block) return mt_err_set(e, MT_ERR_INTERNAL, "out of memory");
    memcpy(dst->block, src->block, (size_t)src->cfg.n_layer * sizeof *dst->block);
    each_stored(dst, forget, be);
    if (alloc_stored(dst, be))
        return mt_err_set(e, MT_ERR_INTERNAL,
                          "out of memory for another micro-batch's activations");
    return MT_OK;
}
#undef ALLOC

void mt_gpt_act_bytes(const mt_gpt *m, double *stored, double *scratch) {
    double N = (double)m->max_B * m->max_T, C = m->cfg.n_embd, Cl = m->Cl,
           V = mt_gpt_vocab_padded(&m->cfg);
    double TT = (double)m->max_B * m->NHl * (double)m->max_T * m->max_T;
    /* flash attention keeps lse (B,NH,T) in fp32 instead of att, needs no datt */
    double att = m->use.flash ? 0 : TT,
           lse = m->use.flash ? (double)m->max_B * m->NHl * m->max_T : 0;
    /* per block: what act_bf16 packs (ln1, qkv, atty, att, res2, ln2, fch,
     * fch_gelu), and what stays fp32 (res3, the LayerNorm statistics, lse) */
    double packable = 3 * N * C + 3 * N * Cl + N * Cl + att + 8 * N * Cl,
           kept = N * C + 4 * N + lse;
    double per_block = kept + (m->cfg.act_bf16 ? 0.5 : 1.0) * packable;
    *stored = 4.0 * ((m->l1 - m->l0) * per_block + (m->first ? N * C : 0) +
                     (m->last ? N * C + 2 * N + (m->use.xent ? 1 : 2) * N * V : 0));
    *scratch =
        4.0 *
        (3 * N * C + 3 * N * Cl + 4 * N * Cl + att + (m->cfg.act_bf16 ? packable : 0) +
         (m->use.mm16 ? 0.5 * (double)mt_gpt_grad16_numel(m, (size_t)N) + (m->last ? N * C / 2 : 0)
                      : 0));
}

void mt_gpt_free(mt_gpt *m, const mt_backend *be) {
    each_stored(m, release, be);
    if (m->owns_scratch) {
        /* (with flash attention m->w.att is a block's lse, freed above) */
        float *watt = m->use.flash ? NULL : m->w.att;
        float *scr[] = {m->dres,  m->dtmp,       m->dbranch, m->dqkv, m->dfch,   m->datt,
                        m->w.ln1, m->w.qkv,      m->w.atty,  watt,    m->w.res2, m->w.ln2,
                        m->w.fch, m->w.fch_gelu, m->d16,     m->lnf16};
        for (size_t i = 0; i < sizeof scr / sizeof scr[0]; i++)
            if (scr[i]) be->free(scr[i]);
    }
    free(m->block);
    memset(m, 0, sizeof *m);
}
