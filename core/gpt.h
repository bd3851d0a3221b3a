/*
 * gpt.h - a GPT-2-architecture decoder-only transformer with hand-written
 * backward, on the backend's ops.
 *
 * Token and learned position embeddings; n_layer pre-LayerNorm blocks of
 * causal multi-head self-attention and a GELU (tanh) MLP of width 4C, each
 * added to the residual stream; a final LayerNorm; the LM head tied to the
 * token embedding. Parameter names and shapes follow PyTorch conventions
 * (Linear weights are (out, in)):
 *   wte.weight (V, C)                 wpe.weight (block_size, C)
 *   h.L.ln_1.weight / .bias (C)       h.L.attn.c_attn.weight (3C, C), .bias (3C)
 *   h.L.attn.c_proj.weight (C, C), .bias (C)
 *   h.L.ln_2.weight / .bias (C)       h.L.mlp.c_fc.weight (4C, C), .bias (4C)
 *   h.L.mlp.c_proj.weight (C, 4C), .bias (C)
 *   ln_f.weight / .bias (C)
 * Init as GPT-2: N(0, 0.02) for weights and embeddings, N(0, 0.02/sqrt(2L))
 * for the two c_proj weights of each block, zero biases, LayerNorm weight 1.
 * Dropout (p = dropout, training only) after the embeddings and on each
 * block's two residual branches, with counter-based masks (backend.h); not on
 * the attention probabilities.
 *
 * Model parallelism (core/split.h): a pipeline stage runs blocks [l0, l1);
 * the first stage also the embeddings, the last ln_f and the head (with a
 * mirror of wte, whose gradient the trainer sums with the first stage's).
 * Tensor parallelism, Megatron-style: c_attn is column-parallel by heads
 * (each rank holds its heads' rows of q, k and v), attention runs on the
 * rank's heads, c_proj is row-parallel; mlp.c_fc is column-parallel over the
 * 4C width, mlp.c_proj row-parallel. Each pair costs one all-reduce of (N,C)
 * in the forward (after the row-parallel matmul, before its bias) and one
 * in the backward (of the column-parallel input gradient). LayerNorms,
 * embeddings and the head are replicated: every tensor-parallel rank holds
 * and computes them whole, with identical inputs and so identical gradients.
 */
#ifndef MT_GPT_H
#define MT_GPT_H

#include <stdint.h>

#include "core/config.h"
#include "core/model.h"
#include "core/params.h"
#include "core/split.h"
#include "kernels/backend.h"

typedef struct {
    int n_layer, n_head, n_embd, block_size, vocab_size;
    float dropout;
    /* keep the activations for the backward in bfloat16 (train.precision =
     * bf16): each block's stored tensors but its output (res3) and the
     * LayerNorm statistics take half the memory; a block computes in an
     * fp32 working copy (m->w), packed after its forward and unpacked
     * before its backward. Changes the gradients by bf16 rounding. */
    int act_bf16;
    /* train.fused: the backend's fused ops where it has them (each one's
     * use is decided at mt_gpt_alloc, m->use) */
    int fused;
    /* the vocabulary in memory is padded to a multiple of this (0 or 1:
     * none; model.vocab_pad, or the backend's vocab_align for auto): wte
     * holds Vp = mt_gpt_vocab_padded() rows, the last Vp - vocab_size of
     * them zero for ever and in no file (core/params.h, pad_rows), and the
     * logits are (N, Vp) with the padding columns outside the loss, the
     * arg-max and sampling (the loss ops' ld, kernels/backend.h) */
    int vocab_pad;
} mt_gpt_config;

/* Vp: vocab_size rounded up to a multiple of vocab_pad. */
static inline int mt_gpt_vocab_padded(const mt_gpt_config *c) {
    int k = c->vocab_pad > 1 ? c->vocab_pad : 1;
    return (c->vocab_size + k - 1) / k * k;
}

/* Where dropout masks come from: training step and the global index of the
 * first sequence of the batch, so a sequence gets the same masks whichever
 * rank holds it. */
typedef struct {
    int on; /* 0: no dropout (evaluation) */
    uint64_t seed, step;
    int64_t seq0;
} mt_gpt_dropout;

/* One block's activations. With act_bf16, ln1, qkv, atty, att, res2, ln2, fch
 * and fch_gelu hold bfloat16 values (two per float slot, half the floats). */
typedef struct {
    int ln1w, ln1b, qkvw, qkvb, projw, projb, ln2w, ln2b, fcw, fcb, fcprojw, fcprojb; /* params */
    float *ln1, *ln1_mean, *ln1_rstd; /* (N,C), (N), (N) */
    float *qkv;                       /* (N,3C) */
    float *atty;                      /* (N,C) attention output, before c_proj */
    float *att;                       /* (B,NH,T,T); flash attention: lse (B,NH,T), fp32 */
    float *res2;                      /* (N,C) residual after attention */
    float *ln2, *ln2_mean, *ln2_rstd; /* (N,C), (N), (N) */
    float *fch, *fch_gelu;            /* (N,4C) */
    float *res3;                      /* (N,C) residual after the MLP = block output */
} mt_gpt_block;

typedef struct {
    mt_gpt_config cfg;
    mt_split sp;
    int l0, l1, first, last;          /* this stage's blocks; first / last stage */
    int Cl, NHl;                      /* channels of q (k, v) and heads on this rank */
    int owns_scratch;                 /* 0 for a clone, which shares the scratch gradients */
    int wte, wpe, lnfw, lnfb;         /* param indices */
    mt_gpt_block *block;              /* (n_layer) */
    int max_B, max_T;                 /* activation buffers are sized for these */
    int seq_len;                      /* tokens per sequence the trainer runs (model interface) */
    float *encoded;                   /* (N,C) embeddings (after dropout) */
    float *lnf, *lnf_mean, *lnf_rstd; /* (N,C), (N), (N) */
    float *logits;                    /* (N,Vp): columns V..Vp-1 padding (mt_gpt_config) */
    float *probs;                     /* (N,Vp) softmax of logits; its gradient in backward
                                       * (NULL with use.xent: logits becomes the gradient) */
    float *dres, *dtmp, *dbranch;     /* (N,C) scratch gradients */
    float *dqkv;                      /* (N,3C) */
    float *dfch;                      /* (N,4C) */
    float *datt;                      /* (B,NH,T,T); NULL with use.flash */
    /* which fused ops this model runs (cfg.fused and the backend has them) */
    struct {
        int flash, resln, gelu, xent;
        int mm_bias, mm_gelu, mm_dgelu, mm_wgrad; /* the products with epilogues */
        int mm16; /* act_bf16: the linear layers' products of bf16 operands (matmul_bf16) */
    } use;
    /* use.mm16 and the parameters' bf16 copy is there (the stage's runs):
     * the last forward's products took bf16 operands, and its backward's do */
    int on16;
    float *d16;     /* (N,4C) bf16: a gradient's copy for its products (scratch) */
    float *lnf16;   /* (N,C) bf16: ln_f's output for the LM head (scratch) */
    mt_gpt_block w; /* act_bf16: fp32 working copy of one block (scratch) */
    /* the last forward: its shape and dropout masks */
    int B, T;
    mt_gpt_dropout drop;
} mt_gpt;

/* Elements of the widest activation gradient a product of m reads, for
 * N = B*T rows (d16's size): (N, 4C/tp) or (N, C). */
size_t mt_gpt_grad16_numel(const mt_gpt *m, size_t N);
/* Whether a GPT of c computing on be runs its linear layers' products on
 * bf16 operands (act_bf16, fused, be has matmul_bf16): it then reads the
 * weights from the parameters' bf16 copy (mt_params' data16, which the
 * model interface's build asks for) and its stored inputs as bf16. */
int mt_gpt_wants_bf16_products(const mt_gpt_config *c, const mt_backend *be);
/* The model.* keys of cfg as a GPT shape, for computing with backend be
 * (model.vocab_pad = 0, auto: be's vocab_align; be NULL: no padding). */
mt_gpt_config mt_gpt_config_of(const mt_config *cfg, const mt_backend *be);
/* Checks the shape (n_embd divisible by n_head, everything positive) and
 * registers the parameters into p: the whole model on one rank. */
int mt_gpt_build(mt_gpt *m, const mt_gpt_config *cfg, mt_params *p, mt_err *e);
/* The same, sharded and placed for this rank of split sp (n_head divisible
 * by sp->tp, else MT_ERR_USAGE). */
int mt_gpt_build_split(mt_gpt *m, const mt_gpt_config *cfg, mt_params *p, const mt_split *sp,
                       mt_err *e);
/* Per-layer parameter counts for balancing stages: a block, the first
 * stage's embeddings and the last stage's ln_f and head. */
void mt_gpt_costs(const mt_gpt_config *cfg, double *block, double *first, double *last);
/* Activation buffers for batches of up to max_B sequences of max_T tokens. */
int mt_gpt_alloc(mt_gpt *m, const mt_backend *be, int max_B, int max_T, mt_err *e);
/* dst: the model src with its own stored activations (a pipeline holds one
 * set per micro-batch in flight) and src's scratch gradients. */
int mt_gpt_clone(mt_gpt *dst, const mt_gpt *src, const mt_backend *be, mt_err *e);
/* Bytes of stored activations (one micro-batch) and of scratch. */
void mt_gpt_act_bytes(const mt_gpt *m, double *stored, double *scratch);
/* One stage's forward: tokens x (B,T) on the first stage, else in (B*T,C)
 * from the previous stage; on the last stage with targets y and stat: the
 * SUM of the losses and the targets the arg-max hits into stat (backend
 * memory, 2 doubles; core/model.h's forward). The output of other stages
 * is mt_gpt_output(m). */
void mt_gpt_forward_stage(mt_gpt *m, const mt_backend *be, const mt_params *p, const int32_t *x,
                          const float *in, const int32_t *y, int B, int T,
                          const mt_gpt_dropout *drop, double *stat);
const float *mt_gpt_output(const mt_gpt *m);
/* Backward of the last forward of this stage; dout (B*T,C) is the gradient of
 * its output (not on the last stage). On stages after the first, d(in) is
 * left in mt_gpt_dinput(m). */
void mt_gpt_backward_stage(mt_gpt *m, const mt_backend *be, mt_params *p, const int32_t *x,
                           const float *in, const int32_t *y, const float *dout, float scale,
                           int accumulate);
const float *mt_gpt_dinput(const mt_gpt *m);
/* Forward over tokens x (B,T), T <= block_size; logits in m->logits. With
 * targets y (B,T), returns the SUM of the B*T cross-entropy losses (probs
 * filled), else 0. drop (NULL = off) applies dropout when cfg.dropout > 0. */
double mt_gpt_forward(mt_gpt *m, const mt_backend *be, const mt_params *p, const int32_t *x,
                      const int32_t *y, int B, int T, const mt_gpt_dropout *drop);
/* Backward of the last forward: grad (+)= d(scale * sum of losses)/d params
 * (accumulate = 0 overwrites p->grad, 1 adds to it). */
void mt_gpt_backward(mt_gpt *m, const mt_backend *be, mt_params *p, const int32_t *x,
                     const int32_t *y, float scale, int accumulate);
void mt_gpt_free(mt_gpt *m, const mt_backend *be);
/* The GPT behind the model interface (core/model.h): trains on token
 * windows of train.seq_len (or model.block_size) tokens; with train.precision
 * = bf16 it keeps its activations in bfloat16. */
extern const mt_model_ops mt_gpt_model;
/* Parameters, and forward FLOPs per token (matmuls and attention). */
double mt_gpt_flops_per_token(const mt_gpt_config *cfg, int T);

#endif
