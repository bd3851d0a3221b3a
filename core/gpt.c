/* gpt.c - the GPT-2-architecture model (see gpt.h). */
#include "gpt.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/rng.h"
#include "kernels/backends.h"

#define P(m, p, idx) ((p)->data + (p)->v[(idx)].offset)
#define G(p, idx)    ((p)->grad + (p)->v[(idx)].offset)
#define P16(p, idx)  ((p)->data16 + (p)->v[(idx)].offset)

static int add(mt_params *p, const char *name, int64_t d0, int64_t d1, mt_init_kind init,
               float scale) {
    int64_t shape[2] = {d0, d1};
    return mt_params_add(p, name, d1 ? 2 : 1, shape, d1 != 0, init, scale);
}

int mt_gpt_wants_bf16_products(const mt_gpt_config *c, const mt_backend *be) {
    return c->act_bf16 && c->fused && be && be->matmul_bf16;
}

mt_gpt_config mt_gpt_config_of(const mt_config *cfg, const mt_backend *be) {
    int pad = (int)cfg->model.vocab_pad;
    if (pad == 0) pad = be && be->vocab_align > 1 ? be->vocab_align : 1; /* auto */
    mt_gpt_config c = {(int)cfg->model.n_layer,
                       (int)cfg->model.n_head,
                       (int)cfg->model.n_embd,
                       (int)cfg->model.block_size,
                       (int)cfg->model.vocab_size,
                       (float)cfg->model.dropout,
                       0,
                       0,
                       pad};
    return c;
}

int mt_gpt_build(mt_gpt *m, const mt_gpt_config *cfg, mt_params *p, mt_err *e) {
    mt_split sp;
    mt_split_whole(&sp, cfg->n_layer);
    return mt_gpt_build_split(m, cfg, p, &sp, e);
}

void mt_gpt_costs(const mt_gpt_config *c, double *block, double *first, double *last) {
    double C = c->n_embd, Vp = mt_gpt_vocab_padded(c); /* (the memory, padding included) */
    *block = 12.0 * C * C + 13.0 * C;
    *first = (Vp + (double)c->block_size) * C;
    *last = Vp * C + 2.0 * C; /* the head's copy of wte, ln_f */
}

int mt_gpt_build_split(mt_gpt *m, const mt_gpt_config *cfg, mt_params *p, const mt_split *sp,
                       mt_err *e) {
    memset(m, 0, sizeof *m);
    const mt_gpt_config *c = cfg;
    if (c->n_layer < 1 || c->n_head < 1 || c->n_embd < 1 || c->block_size < 1 || c->vocab_size < 2)
        return mt_err_set(e, MT_ERR_USAGE,
                          "the GPT model needs n_layer, n_head, n_embd, block_size >= 1 and "
                          "vocab_size >= 2");
    if (c->n_embd % c->n_head != 0)
        return mt_err_set(e, MT_ERR_USAGE,
                          "model.n_embd = %d is not divisible by model.n_head = %d (each head "
                          "gets n_embd / n_head channels)",
                          c->n_embd, c->n_head);
    if (!(c->dropout >= 0.0f && c->dropout < 1.0f))
        return mt_err_set(e, MT_ERR_USAGE, "model.dropout = %g is not in [0, 1)", c->dropout);
    if (c->n_head % sp->tp != 0) {
        mt_err_set(e, MT_ERR_USAGE,
                   "model.n_head = %d is not divisible by parallel.tp = %d (tensor parallelism "
                   "splits attention by heads)",
                   c->n_head, sp->tp);
        mt_err_hint(e, "choose parallel.tp dividing the number of heads");
        return e->code;
    }
    m->cfg = *c;
    m->sp = *sp;
    m->l0 = sp->first[sp->stage];
    m->l1 = sp->first[sp->stage + 1];
    m->first = sp->stage == 0;
    m->last = sp->stage == sp->pp - 1;
    m->Cl = c->n_embd / sp->tp;
    m->NHl = c->n_head / sp->tp;
    m->owns_scratch = 1;
    int64_t C = c->n_embd, L = c->n_layer;
    int tp = sp->tp, r = sp->tp_rank, last = sp->pp - 1;
    const float std = 0.02f, proj_std = 0.02f / sqrtf(2.0f * (float)L);
    m->wte = add(p, "wte.weight", c->vocab_size, C, MT_INIT_NORMAL, std);
    mt_params_pad(p, m->wte, c->vocab_pad); /* Vp rows held, (V, C) in every file */
    mt_params_place(p, m->wte, 0, m->first || m->last, !m->first);
    p->v[m->wte].tied = 1; /* the head's weight on the last stage */
    m->wpe = add(p, "wpe.weight", c->block_size, C, MT_INIT_NORMAL, std);
    mt_params_place(p, m->wpe, 0, m->first, 0);
    m->block = calloc((size_t)L, sizeof *m->block);
    if (!m->block) return mt_err_set(e, MT_ERR_INTERNAL, "out of memory");
    char n[MT_PARAM_NAME_LEN];
    for (int l = 0; l < L; l++) {
        mt_gpt_block *b = &m->block[l];
        int first_idx = p->n;
#define NAME(s) (snprintf(n, sizeof n, "h.%d.%s", l, s), n)
        b->ln1w = add(p, NAME("ln_1.weight"), C, 0, MT_INIT_ONE, 0);
        b->ln1b = add(p, NAME("ln_1.bias"), C, 0, MT_INIT_ZERO, 0);
        b->qkvw = add(p, NAME("attn.c_attn.weight"), 3 * C, C, MT_INIT_NORMAL, std);
        b->qkvb = add(p, NAME("attn.c_attn.bias"), 3 * C, 0, MT_INIT_ZERO, 0);
        b->projw = add(p, NAME("attn.c_proj.weight"), C, C, MT_INIT_NORMAL, proj_std);
        b->projb = add(p, NAME("attn.c_proj.bias"), C, 0, MT_INIT_ZERO, 0);
        b->ln2w = add(p, NAME("ln_2.weight"), C, 0, MT_INIT_ONE, 0);
        b->ln2b = add(p, NAME("ln_2.bias"), C, 0, MT_INIT_ZERO, 0);
        b->fcw = add(p, NAME("mlp.c_fc.weight"), 4 * C, C, MT_INIT_NORMAL, std);
        b->fcb = add(p, NAME("mlp.c_fc.bias"), 4 * C, 0, MT_INIT_ZERO, 0);
        b->fcprojw = add(p, NAME("mlp.c_proj.weight"), C, 4 * C, MT_INIT_NORMAL, proj_std);
        b->fcprojb = add(p, NAME("mlp.c_proj.bias"), C, 0, MT_INIT_ZERO, 0);
#undef NAME
        /* column-parallel: q|k|v rows by heads, c_fc rows; row-parallel: the c_proj columns */
        mt_params_shard(p, b->qkvw, 0, 3, r, tp);
        mt_params_shard(p, b->qkvb, 0, 3, r, tp);
        mt_params_shard(p, b->projw, 1, 1, r, tp);
        mt_params_shard(p, b->fcw, 0, 1, r, tp);
        mt_params_shard(p, b->fcb, 0, 1, r, tp);
        mt_params_shard(p, b->fcprojw, 1, 1, r, tp);
        int st = mt_split_stage_of(sp, l);
        for (int i = first_idx; i < p->n; i++) mt_params_place(p, i, st, st == sp->stage, 0);
    }
    m->lnfw = add(p, "ln_f.weight", C, 0, MT_INIT_ONE, 0);
    m->lnfb = add(p, "ln_f.bias", C, 0, MT_INIT_ZERO, 0);
    mt_params_place(p, m->lnfw, last, m->last, 0);
    mt_params_place(p, m->lnfb, last, m->last, 0);
    for (int i = 0; i < p->n; i++)
        if (p->v[i].ndim < 1) return mt_err_set(e, MT_ERR_INTERNAL, "cannot register GPT params");
    return MT_OK;
}

/* The activations block l computes with: the block's own, or with act_bf16
 * the fp32 working copy m->w (its buffers; the rest, res3 and the LayerNorm
 * statistics included, are block l's). */
static mt_gpt_block *block_view(mt_gpt *m, int l) {
    mt_gpt_block *b = &m->block[l];
    if (!m->cfg.act_bf16) return b;
    mt_gpt_block w = *b;
    w.ln1 = m->w.ln1, w.qkv = m->w.qkv, w.atty = m->w.atty;
    if (!m->use.flash) w.att = m->w.att; /* (flash: lse stays the block's, fp32) */
    w.res2 = m->w.res2, w.ln2 = m->w.ln2, w.fch = m->w.fch, w.fch_gelu = m->w.fch_gelu;
    m->w = w;
    return &m->w;
}

/* act_bf16: packs the working copy into block l's bf16 storage (after its
 * forward), or unpacks it (before its backward), at the last forward's
 * shape. With bf16 products (m->on16) the products' inputs (ln1, atty, ln2,
 * fch_gelu) were packed as they were made (input()) and are read packed:
 * neither packed here nor unpacked, except atty for flash attention's
 * backward, which reads it in fp32. */
static void pack_block(mt_gpt *m, const mt_backend *be, int l, int unpack) {
    const mt_gpt_block *b = &m->block[l], *w = &m->w;
    size_t N = (size_t)m->B * (size_t)m->T, C = (size_t)m->cfg.n_embd, Cl = (size_t)m->Cl;
    size_t TT = m->use.flash ? 0 : (size_t)m->B * (size_t)m->NHl * (size_t)m->T * (size_t)m->T;
    float *f[] = {w->ln1, w->qkv, w->atty, w->att, w->res2, w->ln2, w->fch, w->fch_gelu};
    float *h[] = {b->ln1, b->qkv, b->atty, b->att, b->res2, b->ln2, b->fch, b->fch_gelu};
    size_t n[] = {N * C, N * 3 * Cl, N * Cl, TT, N * C, N * C, N * 4 * Cl, N * 4 * Cl};
    int input[] = {1, 0, !(unpack && m->use.flash), 0, 0, 1, 0, 1}; /* (see above) */
    for (size_t i = 0; i < sizeof n / sizeof n[0]; i++)
        if (!n[i] || (m->on16 && input[i]))
            continue;
        else if (unpack)
            be->from_bf16(f[i], (const uint16_t *)h[i], n[i]);
        else
            be->to_bf16((uint16_t *)h[i], f[i], n[i]);
}

/* A product's operand: its fp32 values f, and with bf16 products (m->on16)
 * its bf16 bits h (NULL: the fp32-operand ops take f). */
typedef struct {
    const float *f;
    const uint16_t *h;
} opnd;

/* Parameter idx as an operand (bf16: the parameters' data16 copy). */
static opnd weight(const mt_gpt *m, const mt_params *p, int idx) {
    opnd o = {P(m, p, idx), m->on16 ? P16(p, idx) : NULL};
    return o;
}

/* An activation x (n floats of the working copy) as a product's input:
 * with bf16 products packed now into store, block l's bf16 storage for it,
 * where the backward reads it too (pack_block leaves it). */
static opnd input(const mt_gpt *m, const mt_backend *be, const float *x, float *store, size_t n) {
    opnd o = {x, NULL};
    if (m->on16) be->to_bf16((uint16_t *)store, x, n), o.h = (const uint16_t *)store;
    return o;
}

/* The same in the backward: store as the forward packed it (x, the
 * working copy, is not unpacked then; only the bf16 bits are read). */
static opnd stored(const mt_gpt *m, const float *x, const float *store) {
    opnd o = {x, m->on16 ? (const uint16_t *)store : NULL};
    return o;
}

/* A gradient dy (n floats) as an operand: with bf16 products converted
 * into m->d16 (scratch: until the next call). */
static opnd grad_in(const mt_gpt *m, const mt_backend *be, const float *dy, size_t n) {
    opnd o = {dy, NULL};
    if (m->on16) be->to_bf16((uint16_t *)m->d16, dy, n), o.h = (const uint16_t *)m->d16;
    return o;
}

/* C(M,N) = alpha op(A) op(B) + beta C: on bf16 operands where they have them */
static void product(const mt_backend *be, int ta, int tb, int M, int N, int K, float alpha, opnd A,
                    int lda, opnd B, int ldb, float beta, float *C, int ldc) {
    if (A.h && B.h)
        be->matmul_bf16(MT_EPI_NONE, ta, tb, M, N, K, alpha, A.h, lda, B.h, ldb, beta, NULL, NULL,
                        C, NULL, ldc);
    else
        be->matmul(ta, tb, M, N, K, alpha, A.f, lda, B.f, ldb, beta, C, ldc);
}

/* The dropout stream of one site ("embd", "attn", "mlp") of layer l. */
static uint64_t drop_stream(const mt_gpt_dropout *d, const char *site, int l) {
    char name[48];
    snprintf(name, sizeof name, "dropout/%s/%d", site, l);
    return mt_rng_substream(mt_rng_stream(name), d->step);
}

/* Whether the last forward dropped anything (training, model.dropout > 0). */
static int drops(const mt_gpt *m) {
    return m->drop.on && m->cfg.dropout > 0.0f;
}

/* y = dropout of x at one site (y may be x); nothing at all unless drops(m). */
static void dropout_to(mt_gpt *m, const mt_backend *be, float *y, const float *x, size_t n,
                       const char *site, int l, int backward) {
    const mt_gpt_dropout *d = &m->drop;
    if (!drops(m)) return;
    uint64_t off = (uint64_t)d->seq0 * (uint64_t)m->T * (uint64_t)m->cfg.n_embd;
    if (backward)
        be->dropout_backward(y, x, n, m->cfg.dropout, d->seed, drop_stream(d, site, l), off);
    else
        be->dropout_forward(y, x, n, m->cfg.dropout, d->seed, drop_stream(d, site, l), off);
}

static void dropout(mt_gpt *m, const mt_backend *be, float *x, size_t n, const char *site, int l,
                    int backward) {
    dropout_to(m, be, x, x, n, site, l, backward);
}

/* y(N,out) = x(N,in) W(out,in)^T + b(out) (use.mm_bias: in one product) */
static void linear(const mt_gpt *m, const mt_backend *be, float *y, opnd x, opnd W, const float *b,
                   int N, int in, int out) {
    if (m->use.mm_bias && x.h)
        be->matmul_bf16(MT_EPI_BIAS, 0, 1, N, out, in, 1.0f, x.h, in, W.h, in, 0.0f, b, NULL, y,
                        NULL, out);
    else if (m->use.mm_bias)
        be->matmul_bias(0, 1, N, out, in, x.f, in, W.f, in, b, y, out);
    else
        product(be, 0, 1, N, out, in, 1.0f, x, in, W, in, 0.0f, y, out);
    if (!m->use.mm_bias) be->bias_add(y, b, N, out);
}

/* Row-parallel: y(N,out) = sum over the tensor-parallel ranks of x(N,in)
 * W(out,in)^T (each rank's slice of the inner dimension), then + b(out):
 * the bias joins the product only without tensor parallelism. */
static void linear_row(const mt_gpt *m, const mt_backend *be, float *y, opnd x, opnd W,
                       const float *b, int N, int in, int out) {
    if (m->sp.tp == 1) {
        linear(m, be, y, x, W, b, N, in, out);
        return;
    }
    product(be, 0, 1, N, out, in, 1.0f, x, in, W, in, 0.0f, y, out);
    mt_split_tp_sum(&m->sp, y, (size_t)N * (size_t)out);
    be->bias_add(y, b, N, out);
}

/* dx(N,in) = dy W (overwritten; dx NULL: none); dW(out,in) += dy^T x;
 * db(out) += colsum dy (db NULL: the caller has summed it). With bf16
 * products the bias gradient sums the fp32 dy, as without. */
static void linear_backward(const mt_gpt *m, const mt_backend *be, float *dx, float *dW, float *db,
                            opnd dy, opnd x, opnd W, int N, int in, int out) {
    if (db && m->use.mm_wgrad && !dy.h) { /* both in one product */
        be->matmul_wgrad_bgrad(out, in, N, dy.f, out, x.f, in, dW, in, db);
    } else {
        product(be, 1, 0, out, in, N, 1.0f, dy, out, x, in, 1.0f, dW, in);
        if (db) be->bias_grad(db, dy.f, N, out, 1.0f);
    }
    if (dx) product(be, 0, 0, N, in, out, 1.0f, dy, out, W, in, 0.0f, dx, in);
}

/* The MLP's first product: fch = ln2 W_fc^T + b_fc (kept for the backward)
 * and fch_gelu = gelu(fch), fused as far as the backend goes. */
static void mlp_up(const mt_gpt *m, const mt_backend *be, const mt_params *p, mt_gpt_block *b,
                   opnd ln2, int N) {
    int C = m->cfg.n_embd, H = 4 * m->Cl;
    opnd W = weight(m, p, b->fcw);
    const float *bias = P(m, p, b->fcb);
    if (m->use.mm_gelu && ln2.h) { /* one product: fch = ln2 W^T + b, fch_gelu = gelu(fch) */
        be->matmul_bf16(MT_EPI_BIAS_GELU, 0, 1, N, H, C, 1.0f, ln2.h, C, W.h, C, 0.0f, bias, b->fch,
                        b->fch_gelu, NULL, H);
    } else if (m->use.mm_gelu) {
        be->matmul_bias_gelu(0, 1, N, H, C, ln2.f, C, W.f, C, bias, b->fch, b->fch_gelu, H);
    } else if (m->use.gelu) { /* fch keeps the pre-activation, bias included */
        product(be, 0, 1, N, H, C, 1.0f, ln2, C, W, C, 0.0f, b->fch, H);
        be->bias_gelu_forward(b->fch, b->fch_gelu, bias, N, H);
    } else {
        linear(m, be, b->fch, ln2, W, bias, N, C, H);
        be->gelu_forward(b->fch_gelu, b->fch, (size_t)N * (size_t)H);
    }
}

/* out = a + b, then LayerNorm of out into ln (the block's, or ln_f) */
static void residual_ln(const mt_gpt *m, const mt_backend *be, float *out, const float *a,
                        const float *b, float *ln, float *mean, float *rstd, const float *w,
                        const float *bias, int N, int C) {
    if (m->use.resln) {
        be->residual_layernorm_forward(out, ln, mean, rstd, a, b, w, bias, N, C);
        return;
    }
    be->add(out, a, b, (size_t)N * (size_t)C);
    be->layernorm_forward(ln, mean, rstd, out, w, bias, N, C);
}

/* The gradient entering a branch (the attention's or the MLP's) of layer l
 * from dres, the gradient of the residual after it: dres through the
 * branch's dropout, in m->dbranch (dres is left as it is). Fused or without
 * dropout, one pass or none; else the unfused ops' three (the numbers of
 * earlier versions). */
static const float *branch_grad(mt_gpt *m, const mt_backend *be, const char *site, int l) {
    size_t NC = (size_t)m->B * (size_t)m->T * (size_t)m->cfg.n_embd;
    if (m->cfg.fused && !drops(m)) return m->dres;
    if (m->cfg.fused) {
        dropout_to(m, be, m->dbranch, m->dres, NC, site, l, 1);
        return m->dbranch;
    }
    be->scale(m->dbranch, 0.0f, NC);
    be->accumulate(m->dbranch, m->dres, NC);
    dropout(m, be, m->dbranch, NC, site, l, 1);
    return m->dbranch;
}

double mt_gpt_forward(mt_gpt *m, const mt_backend *be, const mt_params *p, const int32_t *x,
                      const int32_t *y, int B, int T, const mt_gpt_dropout *drop) {
    double *stat = y ? mt_stat_alloc(be) : NULL;
    if (y && !stat) return NAN; /* (no memory for two doubles) */
    mt_gpt_forward_stage(m, be, p, x, NULL, y, B, T, drop, stat);
    return stat ? mt_stat_take(be, stat) : 0.0;
}

void mt_gpt_forward_stage(mt_gpt *m, const mt_backend *be, const mt_params *p, const int32_t *x,
                          const float *in, const int32_t *y, int B, int T,
                          const mt_gpt_dropout *drop, double *stat) {
    const mt_gpt_config *c = &m->cfg;
    int C = c->n_embd, V = c->vocab_size, Vp = mt_gpt_vocab_padded(c), N = B * T, Cl = m->Cl,
        NHl = m->NHl;
    m->B = B;
    m->T = T;
    m->on16 = m->use.mm16 && p->data16;
    memset(&m->drop, 0, sizeof m->drop);
    if (drop) m->drop = *drop;
    size_t NC = (size_t)N * (size_t)C;
    const float *res = in; /* (N,C) the residual stream entering block l */
    if (m->first) {
        be->embedding_forward(m->encoded, x, P(m, p, m->wte), P(m, p, m->wpe), B, T, C);
        dropout(m, be, m->encoded, NC, "embd", 0, 0);
        res = m->encoded;
    }
    int normed = 0; /* the block's ln1 (or ln_f) was computed with the residual add before it */
    for (int l = m->l0; l < m->l1; l++) {
        mt_gpt_block *b = block_view(m, l);
        if (!normed)
            be->layernorm_forward(b->ln1, b->ln1_mean, b->ln1_rstd, res, P(m, p, b->ln1w),
                                  P(m, p, b->ln1b), N, C);
        opnd ln1 = input(m, be, b->ln1, m->block[l].ln1, NC);
        linear(m, be, b->qkv, ln1, weight(m, p, b->qkvw), P(m, p, b->qkvb), N, C, 3 * Cl);
        if (m->use.flash) /* b->att holds the rows' log-sum-exp */
            be->flash_attention_forward(b->atty, b->att, b->qkv, B, T, Cl, NHl);
        else
            be->attention_forward(b->atty, b->att, b->qkv, B, T, Cl, NHl);
        /* res2 = res + dropout(atty W_proj^T + b_proj) */
        opnd atty = input(m, be, b->atty, m->block[l].atty, (size_t)N * (size_t)Cl);
        linear_row(m, be, b->res2, atty, weight(m, p, b->projw), P(m, p, b->projb), N, Cl, C);
        dropout(m, be, b->res2, NC, "attn", l, 0);
        residual_ln(m, be, b->res2, b->res2, res, b->ln2, b->ln2_mean, b->ln2_rstd,
                    P(m, p, b->ln2w), P(m, p, b->ln2b), N, C);
        mlp_up(m, be, p, b, input(m, be, b->ln2, m->block[l].ln2, NC), N);
        /* res3 = res2 + dropout(gelu(fch) W_fcproj^T + b_fcproj) */
        size_t NH = (size_t)N * 4 * (size_t)Cl;
        linear_row(m, be, b->res3, input(m, be, b->fch_gelu, m->block[l].fch_gelu, NH),
                   weight(m, p, b->fcprojw), P(m, p, b->fcprojb), N, 4 * Cl, C);
        dropout(m, be, b->res3, NC, "mlp", l, 0);
        float *res3 = b->res3;
        const float *res2 = b->res2; /* (b may be m->w, which block_view below changes) */
        if (c->act_bf16) pack_block(m, be, l, 0); /* (the add below touches none of it) */
        /* the add, with the next LayerNorm (the next block's ln1, or ln_f) where fused */
        normed = m->use.resln && (l + 1 < m->l1 || m->last);
        if (normed && l + 1 < m->l1) {
            mt_gpt_block *n = block_view(m, l + 1);
            residual_ln(m, be, res3, res3, res2, n->ln1, n->ln1_mean, n->ln1_rstd, P(m, p, n->ln1w),
                        P(m, p, n->ln1b), N, C);
        } else if (normed) {
            residual_ln(m, be, res3, res3, res2, m->lnf, m->lnf_mean, m->lnf_rstd, P(m, p, m->lnfw),
                        P(m, p, m->lnfb), N, C);
        } else {
            be->add(res3, res3, res2, NC);
        }
        res = res3;
    }
    if (!m->last) return;
    if (!normed)
        be->layernorm_forward(m->lnf, m->lnf_mean, m->lnf_rstd, res, P(m, p, m->lnfw),
                              P(m, p, m->lnfb), N, C);
    /* logits (N,Vp) = lnf (N,C) wte(Vp,C)^T: the LM head is the token
     * embedding; columns V..Vp-1 (wte's zero pad rows) are 0 and the loss
     * ops leave them out (their ld) */
    product(be, 0, 1, N, Vp, C, 1.0f, input(m, be, m->lnf, m->lnf16, NC), C, weight(m, p, m->wte),
            C, 0.0f, m->logits, Vp);
    if (!y || !stat) return;
    if (m->use.xent) { /* logits become their unscaled gradient (see the backward) */
        be->xent_fused(m->logits, y, N, V, Vp, stat);
        return;
    }
    double loss = be->softmax_xent_forward(m->probs, m->logits, y, N, V, Vp);
    mt_stat_put(be, stat, loss, (double)be->count_correct(m->logits, y, N, V, Vp));
}

const float *mt_gpt_output(const mt_gpt *m) {
    return m->block[m->l1 - 1].res3;
}

const float *mt_gpt_dinput(const mt_gpt *m) {
    return m->dres;
}

void mt_gpt_backward(mt_gpt *m, const mt_backend *be, mt_params *p, const int32_t *x,
                     const int32_t *y, float scale, int accumulate) {
    mt_gpt_backward_stage(m, be, p, x, NULL, y, NULL, scale, accumulate);
}

void mt_gpt_backward_stage(mt_gpt *m, const mt_backend *be, mt_params *p, const int32_t *x,
                           const float *in, const int32_t *y, const float *dout, float scale,
                           int accumulate) {
    const mt_gpt_config *c = &m->cfg;
    int B = m->B, T = m->T, C = c->n_embd, V = c->vocab_size, Vp = mt_gpt_vocab_padded(c),
        N = B * T, Cl = m->Cl, NHl = m->NHl;
    size_t NC = (size_t)N * (size_t)C;
    if (!accumulate) be->scale(p->grad, 0.0f, p->numel);
    if (m->last) {
        /* dlogits (N,Vp) = scale * (probs - onehot): in place of probs, or
         * (use.xent) the forward left probs - onehot in logits, and scale
         * goes into the products' alpha; 0 in the padding columns, so wte's
         * pad rows get a zero gradient and add nothing to dlnf */
        const float *dlogits = m->logits;
        float alpha = scale;
        if (!m->use.xent) {
            be->softmax_xent_backward(m->probs, m->probs, y, N, V, Vp, scale);
            dlogits = m->probs, alpha = 1.0f;
        }
        const float *top = m->block[m->l1 - 1].res3;
        /* dwte += dlogits^T lnf; dlnf = dlogits wte */
        be->matmul(1, 0, Vp, C, N, alpha, dlogits, Vp, m->lnf, C, 1.0f, G(p, m->wte), C);
        be->matmul(0, 0, N, C, Vp, alpha, dlogits, Vp, P(m, p, m->wte), C, 0.0f, m->dtmp, C);
        be->scale(m->dres, 0.0f, NC);
        be->layernorm_backward(m->dres, G(p, m->lnfw), G(p, m->lnfb), m->dtmp, top,
                               P(m, p, m->lnfw), m->lnf_mean, m->lnf_rstd, N, C);
        mt_params_grad_final(p, m->lnfw); /* ln_f; wte (first in the buffer) is not */
    } else {
        be->scale(m->dres, 0.0f, NC);
        be->accumulate(m->dres, dout, NC);
    }
    /* m->dres holds dL/d(residual after block l) going down */
    for (int l = m->l1 - 1; l >= m->l0; l--) {
        mt_gpt_block *b = block_view(m, l);
        if (c->act_bf16) pack_block(m, be, l, 1);
        const float *res = l > m->l0 ? m->block[l - 1].res3 : m->first ? m->encoded : in;
        /* MLP branch: res3 = res2 + drop(fcproj); dres carries on to res2 unchanged */
        opnd dy = grad_in(m, be, branch_grad(m, be, "mlp", l), NC);
        size_t NH = (size_t)N * 4 * (size_t)Cl;
        linear_backward(m, be, m->use.mm_dgelu ? NULL : m->dfch, G(p, b->fcprojw), G(p, b->fcprojb),
                        dy, stored(m, b->fch_gelu, m->block[l].fch_gelu), weight(m, p, b->fcprojw),
                        N, 4 * Cl, C);
        mt_params_grad_final(p, b->fcprojw); /* (the hook's calls follow the buffer's order) */
        float *dfcb = G(p, b->fcb);
        if (m->use.mm_dgelu) { /* dfch = (dy W) * gelu'(fch), dfcb += its sums: one product */
            opnd W = weight(m, p, b->fcprojw);
            if (dy.h)
                be->matmul_bf16(MT_EPI_DGELU, 0, 0, N, 4 * Cl, C, 1.0f, dy.h, C, W.h, 4 * Cl, 0.0f,
                                NULL, b->fch, m->dfch, dfcb, 4 * Cl);
            else
                be->matmul_dgelu(0, 0, N, 4 * Cl, C, dy.f, C, W.f, 4 * Cl, b->fch, m->dfch, dfcb,
                                 4 * Cl);
            dfcb = NULL;
        } else if (m->use.gelu) { /* the bias gradient in the same pass */
            be->gelu_bias_backward(m->dfch, dfcb, m->dfch, b->fch, N, 4 * Cl);
            dfcb = NULL;
        } else {
            be->gelu_backward(m->dfch, m->dfch, b->fch, NH);
        }
        linear_backward(m, be, m->dtmp, G(p, b->fcw), dfcb, grad_in(m, be, m->dfch, NH),
                        stored(m, b->ln2, m->block[l].ln2), weight(m, p, b->fcw), N, C, 4 * Cl);
        mt_split_tp_sum(&m->sp, m->dtmp, NC); /* the column-parallel input's gradient */
        be->layernorm_backward(m->dres, G(p, b->ln2w), G(p, b->ln2b), m->dtmp, b->res2,
                               P(m, p, b->ln2w), b->ln2_mean, b->ln2_rstd, N, C);
        mt_params_grad_final(p, b->ln2w); /* ln_2 and mlp.c_fc */
        /* attention branch: res2 = res + drop(proj) */
        dy = grad_in(m, be, branch_grad(m, be, "attn", l), NC);
        linear_backward(m, be, m->dtmp, G(p, b->projw), G(p, b->projb), dy,
                        stored(m, b->atty, m->block[l].atty), weight(m, p, b->projw), N, Cl, C);
        mt_params_grad_final(p, b->projw);
        if (m->use.flash) /* b->att: the forward's log-sum-exp; b->atty its output */
            be->flash_attention_backward(m->dqkv, m->dtmp, b->qkv, b->atty, b->att, B, T, Cl, NHl);
        else
            be->attention_backward(m->dqkv, m->datt, m->dtmp, b->qkv, b->att, B, T, Cl, NHl);
        linear_backward(m, be, m->dtmp, G(p, b->qkvw), G(p, b->qkvb),
                        grad_in(m, be, m->dqkv, (size_t)N * 3 * (size_t)Cl),
                        stored(m, b->ln1, m->block[l].ln1), weight(m, p, b->qkvw), N, C, 3 * Cl);
        mt_split_tp_sum(&m->sp, m->dtmp, NC);
        be->layernorm_backward(m->dres, G(p, b->ln1w), G(p, b->ln1b), m->dtmp, res,
                               P(m, p, b->ln1w), b->ln1_mean, b->ln1_rstd, N, C);
        mt_params_grad_final(p, b->ln1w); /* ln_1 and attn.c_attn: the block's first tensors */
    }
    if (!m->first) return; /* m->dres is d(in) */
    dropout(m, be, m->dres, NC, "embd", 0, 1);
    be->embedding_backward(G(p, m->wte), G(p, m->wpe), m->dres, x, B, T, C);
    mt_params_grad_final(p, m->wte);
}

double mt_gpt_flops_per_token(const mt_gpt_config *c, int T) {
    double C = c->n_embd, L = c->n_layer, V = mt_gpt_vocab_padded(c);
    /* forward multiply-adds per token: qkv 3C^2, proj C^2, fc 4C^2, fcproj 4C^2 per
     * layer, LM head VpC (the product computed, padding included); attention q.k
     * and att.v: 2 T C per layer (causal: half) */
    double matmul = L * 12.0 * C * C + V * C;
    double attn = L * 2.0 * (double)T * C * 0.5;
    return 2.0 * (matmul + attn);
}

/* ---- the model interface (core/model.h) ---- */

static int seq_len_of(const mt_config *cfg) {
    return (int)(cfg->train.seq_len ? cfg->train.seq_len : cfg->model.block_size);
}

static int op_check(const mt_config *c, mt_err *e) {
    if (!c->data.train_tokens[0])
        return mt_err_set(e, MT_ERR_USAGE,
                          "data.train_tokens is empty (model.kind = gpt trains on token "
                          "shards; make them with `mpitrain data tokenize`)");
    if (!c->data.val_tokens[0])
        return mt_err_set(e, MT_ERR_USAGE, "data.val_tokens is empty (model.kind = gpt)");
    if (c->model.n_embd % c->model.n_head != 0)
        return mt_err_set(e, MT_ERR_USAGE,
                          "model.n_embd = %lld is not divisible by model.n_head = %lld",
                          (long long)c->model.n_embd, (long long)c->model.n_head);
    static const int vocab[] = {0, 256, 50257}; /* by data.tokenizer: ids, bytes, gpt2 */
    int tok = c->data.tokenizer;
    if (tok > 0 && tok < 3 && c->model.vocab_size != vocab[tok])
        return mt_err_set(e, MT_ERR_USAGE,
                          "data.tokenizer = %s needs model.vocab_size = %d, not %lld (padding "
                          "for the kernels is model.vocab_pad's)",
                          tok == MT_TOK_GPT2 ? "gpt2" : "bytes", vocab[tok],
                          (long long)c->model.vocab_size);
    if (c->train.seq_len > c->model.block_size)
        return mt_err_set(e, MT_ERR_USAGE,
                          "train.seq_len = %lld is longer than model.block_size = %lld",
                          (long long)c->train.seq_len, (long long)c->model.block_size);
    return MT_OK;
}

static void op_rows(const mt_config *cfg, mt_model_rows *r) {
    r->data = MT_DATA_TOKENS;
    r->x_width = r->y_width = seq_len_of(cfg);
}

static int op_layers(const mt_config *cfg, double *cost, double *first, double *last) {
    mt_gpt_config gc = mt_gpt_config_of(cfg, NULL); /* (balancing: an explicit vocab_pad only) */
    double block;
    mt_gpt_costs(&gc, &block, first, last);
    for (int l = 0; cost && l < gc.n_layer; l++) cost[l] = block;
    return gc.n_layer;
}

static int op_build(void *m, const mt_config *cfg, const mt_backend *be, mt_params *p,
                    const mt_split *sp, mt_err *e) {
    mt_gpt_config gc = mt_gpt_config_of(cfg, be);
    gc.act_bf16 = cfg->train.precision == MT_PREC_BF16;
    gc.fused = cfg->train.fused;
    int rc = mt_gpt_build_split(m, &gc, p, sp, e);
    if (mt_gpt_wants_bf16_products(&gc, be)) p->want_bf16 = 1; /* the weights' bf16 copy */
    ((mt_gpt *)m)->seq_len = seq_len_of(cfg);
    return rc;
}

static int op_alloc(void *mv, const mt_backend *be, int max_rows, mt_err *e) {
    mt_gpt *m = mv;
    return mt_gpt_alloc(m, be, max_rows, m->seq_len, e);
}

static int op_clone(void *dst, const void *src, const mt_backend *be, mt_err *e) {
    return mt_gpt_clone(dst, src, be, e);
}

static void op_free(void *m, const mt_backend *be) {
    mt_gpt_free(m, be);
}

static size_t op_width(const void *mv) { /* the residual stream: (T, C) per sequence */
    const mt_gpt *m = mv;
    return (size_t)m->seq_len * (size_t)m->cfg.n_embd;
}

static void op_forward(void *mv, const mt_backend *be, const mt_params *p, const mt_model_batch *b,
                       const float *in, double *stat) {
    mt_gpt *m = mv;
    mt_gpt_dropout drop = {1, b->seed, b->step, b->row0};
    mt_gpt_forward_stage(m, be, p, b->x, in, b->y, b->rows, m->seq_len, b->train ? &drop : NULL,
                         stat);
}

static const float *op_output(const void *m) {
    const mt_gpt *g = m;
    return g->last ? NULL : mt_gpt_output(g);
}

static void op_backward(void *m, const mt_backend *be, mt_params *p, const mt_model_batch *b,
                        const float *in, const float *dout, float scale, int accumulate) {
    mt_gpt_backward_stage(m, be, p, b->x, in, b->y, dout, scale, accumulate);
}

static const float *op_dinput(const void *m) {
    return mt_gpt_dinput(m);
}

static void op_act_bytes(const void *m, double *stored, double *scratch) {
    mt_gpt_act_bytes(m, stored, scratch);
}

static void op_describe(const mt_config *cfg, const mt_backend *be, char *buf, size_t n) {
    mt_gpt_config gc = mt_gpt_config_of(cfg, be);
    char pad[48] = "";
    if (mt_gpt_vocab_padded(&gc) != gc.vocab_size)
        snprintf(pad, sizeof pad, " (padded to %d)", mt_gpt_vocab_padded(&gc));
    snprintf(buf, n,
             "gpt %lld layers, %lld heads, n_embd %lld, block_size %lld, vocab %lld%s, "
             "dropout %g",
             (long long)cfg->model.n_layer, (long long)cfg->model.n_head,
             (long long)cfg->model.n_embd, (long long)cfg->model.block_size,
             (long long)cfg->model.vocab_size, pad, cfg->model.dropout);
}

static int op_runs_fused(const mt_config *cfg, const mt_backend *be, const char *op) {
    mt_gpt_config gc = mt_gpt_config_of(cfg, be);
    gc.act_bf16 = cfg->train.precision == MT_PREC_BF16;
    gc.fused = 1;
    int mm16 = mt_gpt_wants_bf16_products(&gc, be);
    if (!strcmp(op, "matmul_bf16")) return gc.act_bf16 ? mm16 : -1;
    if (!strcmp(op, "matmul_wgrad_bgrad") && mm16)
        return -1; /* (bf16 products: bias_grad sums the fp32 gradient, linear_backward) */
    if (!strcmp(op, "flash_attention")) /* (a backend's flash ops may not take every head size) */
        return gc.n_head > 0 && mt_backend_flash_takes(be, gc.n_embd / gc.n_head);
    return mt_backend_has_fused(be, op);
}

const mt_model_ops mt_gpt_model = {
    .kind = "gpt",
    .size = sizeof(mt_gpt),
    .check = op_check,
    .rows = op_rows,
    .layers = op_layers,
    .build = op_build,
    .alloc = op_alloc,
    .clone = op_clone,
    .free = op_free,
    .in_width = op_width,
    .out_width = op_width,
    .forward = op_forward,
    .output = op_output,
    .backward = op_backward,
    .dinput = op_dinput,
    .act_bytes = op_act_bytes,
    .describe = op_describe,
    .fused_ops = "flash_attention residual_layernorm bias_gelu xent matmul_bias matmul_bias_gelu "
                 "matmul_dgelu matmul_wgrad_bgrad matmul_bf16",
    .runs_fused = op_runs_fused,
};
