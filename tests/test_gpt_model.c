/*
 * test_gpt_model.c - the whole GPT model at tiny size: finite-difference
 * check of the gradient of every parameter, with and without dropout; the
 * dropout masks follow the sequence, not the batch it is in; gradient
 * accumulation; and bad shapes are errors. Then the same gradient check on
 * the CPU backend with the products with epilogues (matmul_bias, ...;
 * kernels/backend.h) filled by their compositions (tests/matmul_compose.c),
 * asserting the model called them, and one forward and backward there
 * bitwise equal to the plain CPU backend's (the same float operations).
 * A padded vocabulary (vocab_pad 8: V 11 held as 16 rows) gives the loss,
 * logits and gradients of the plain one within fp32 rounding (not bitwise:
 * OpenBLAS picks its sgemm kernels by the product's shape, N = 11 or 16, and
 * they round the same sums differently; bounds: loss 1e-6 relative, logits
 * and gradients normalized error 1e-5), exactly zero gradients in the pad
 * rows, and AdamW keeps those rows at zero. In bf16 (activations kept in
 * bf16, matmuls on bf16 operands) the products of bf16 operands
 * (matmul_bf16, with every epilogue on the composed backend) give bitwise
 * the loss and gradients of the fp32-operand products.
 *
 * L = scale * (sum of the B*T token losses) with scale = 1/(B*T). Central
 * differences with h = 3e-3 in float, loss summed in double (h = 1e-2 leaves
 * a truncation error near the bound once dropout scales activations up). Bound as in
 * test_gradcheck.c: normalized error <= 2e-3 over all parameters, and each
 * parameter tensor's own normalized error <= 2e-2.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/gpt.h"
#include "base/rng.h"
#include "matmul_compose.h"
#include "test_util.h"

enum { B = 2, T = 5, NL = 2, NH = 2, NC = 8, V = 11, BS = 6 };

static const mt_backend *be;

static void tokens(int32_t *x, int32_t *y) {
    for (int i = 0; i < B * T; i++) {
        x[i] = (int32_t)mt_rng_below(3, 1, (uint64_t)i, V);
        y[i] = (int32_t)mt_rng_below(3, 2, (uint64_t)i, V);
    }
}

/* act_bf16: bf16 activations, and the parameters' bf16 copy where the
 * model then takes bf16 products (as the model interface's build asks for
 * it; refreshed here after the values are set) */
static void setup_with(mt_gpt *m, mt_params *p, float dropout, int fused, int vocab_pad,
                       int act_bf16) {
    mt_gpt_config c = {NL, NH, NC, BS, V, dropout, act_bf16, fused, vocab_pad};
    mt_err e = {0};
    mt_params_init(p);
    CHECK(mt_gpt_build(m, &c, p, &e) == 0, "build: %s", e.msg);
    p->want_bf16 = mt_gpt_wants_bf16_products(&c, be);
    CHECK(mt_params_alloc(p, &e) == 0, "alloc: %s", e.msg);
    mt_params_init_values(p, 42);
    /* move LayerNorm weights and biases off 1 and 0, so their gradients matter */
    for (int i = 0; i < p->n; i++) /* (not the pad rows, which stay 0) */
        for (size_t k = 0; k < mt_param_block_numel(&p->v[i]); k++)
            p->data[p->v[i].offset + k] += 0.1f * (mt_rng_uniform(5, (uint64_t)i, k) - 0.5f);
    mt_params_to_bf16(p, be);
    CHECK(mt_gpt_alloc(m, be, B, T, &e) == 0, "alloc activations: %s", e.msg);
}

static void setup_padded(mt_gpt *m, mt_params *p, float dropout, int fused, int vocab_pad) {
    setup_with(m, p, dropout, fused, vocab_pad, 0);
}

static void setup(mt_gpt *m, mt_params *p, float dropout, int fused) {
    setup_padded(m, p, dropout, fused, 1);
}

static double loss_of(mt_gpt *m, mt_params *p, const int32_t *x, const int32_t *y,
                      const mt_gpt_dropout *d) {
    return mt_gpt_forward(m, be, p, x, y, B, T, d) / (B * T);
}

static void check_grads(float dropout, int fused) {
    mt_gpt m;
    mt_params p;
    setup(&m, &p, dropout, fused);
    int32_t x[B * T], y[B * T];
    tokens(x, y);
    mt_gpt_dropout d = {1, 7, 3, 0};
    loss_of(&m, &p, x, y, &d);
    mt_gpt_backward(&m, be, &p, x, y, 1.0f / (B * T), 0);
    double d2 = 0, n2 = 0, worst_tensor = 0;
    const char *worst_name = "";
    const float h = 3e-3f;
    for (int i = 0; i < p.n; i++) {
        double td2 = 0, tn2 = 0;
        for (size_t k = 0; k < p.v[i].numel; k++) {
            float *w = &p.data[p.v[i].offset + k], keep = *w;
            *w = keep + h;
            double lp = loss_of(&m, &p, x, y, &d);
            *w = keep - h;
            double lm = loss_of(&m, &p, x, y, &d);
            *w = keep;
            double num = (lp - lm) / (2.0 * h), ana = p.grad[p.v[i].offset + k];
            td2 += (ana - num) * (ana - num);
            tn2 += num * num;
        }
        double rel = tn2 > 0 ? sqrt(td2 / tn2) : sqrt(td2);
        if (rel > worst_tensor) worst_tensor = rel, worst_name = p.v[i].name;
        CHECK(tn2 > 0, "dropout %.2f: %s has an all-zero numeric gradient", dropout, p.v[i].name);
        d2 += td2;
        n2 += tn2;
    }
    double rel = sqrt(d2 / n2);
    printf("whole model on %s, %s ops (flash %d, resln %d, gelu %d, xent %d, products with "
           "epilogues %d%d%d%d), dropout %.2f: %zu parameters, normalized error %.2e (bound "
           "2e-3), worst tensor %s %.2e (bound 2e-2)\n",
           be->name, fused ? "fused" : "unfused", m.use.flash, m.use.resln, m.use.gelu, m.use.xent,
           m.use.mm_bias, m.use.mm_gelu, m.use.mm_dgelu, m.use.mm_wgrad, dropout,
           mt_params_count(&p), rel, worst_name, worst_tensor);
    CHECK(!fused || (m.use.flash && m.use.resln && m.use.gelu && m.use.xent),
          "fused: the CPU backend's fused ops did not all run");
    CHECK(rel <= 2e-3, "dropout %.2f: normalized error %.3e", dropout, rel);
    CHECK(worst_tensor <= 2e-2, "dropout %.2f: %s normalized error %.3e", dropout, worst_name,
          worst_tensor);

    /* accumulate = 1 adds: two backwards give twice the gradient */
    float *g1 = malloc(p.numel * sizeof(float));
    memcpy(g1, p.grad, p.numel * sizeof(float));
    loss_of(&m, &p, x, y, &d);
    mt_gpt_backward(&m, be, &p, x, y, 1.0f / (B * T), 1);
    /* (not bitwise: sgemm and bias_grad with beta = 1 round the sum again) */
    double worst = 0, gmax = 0;
    for (size_t k = 0; k < p.numel; k++) {
        worst = fmax(worst, fabs(p.grad[k] - 2.0f * g1[k]));
        gmax = fmax(gmax, fabs(g1[k]));
    }
    CHECK(worst <= 1e-5 * gmax, "accumulate: off by %.2e of max|g| %.2e", worst, gmax);
    free(g1);
    mt_gpt_free(&m, be);
    mt_params_free(&p);
}

/* Dropout masks depend on (seed, step, global sequence), so one batch of 2
 * and two batches of 1 (seq0 = 0, 1) give the same losses. */
static void check_dropout_layout(void) {
    mt_gpt m;
    mt_params p;
    setup(&m, &p, 0.3f, 0);
    int32_t x[B * T], y[B * T];
    tokens(x, y);
    mt_gpt_dropout both = {1, 7, 3, 0}, first = {1, 7, 3, 0}, second = {1, 7, 3, 1};
    double l2 = mt_gpt_forward(&m, be, &p, x, y, B, T, &both);
    double a = mt_gpt_forward(&m, be, &p, x, y, 1, T, &first);
    double b = mt_gpt_forward(&m, be, &p, x + T, y + T, 1, T, &second);
    double off = mt_gpt_forward(&m, be, &p, x, y, B, T, NULL);
    mt_gpt_dropout other = {1, 7, 4, 0};
    double l_other = mt_gpt_forward(&m, be, &p, x, y, B, T, &other);
    printf("dropout masks by sequence: batch of 2 %.9f, two batches of 1 %.9f, no dropout %.9f, "
           "next step %.9f\n",
           l2, a + b, off, l_other);
    CHECK(fabs(l2 - (a + b)) <= 1e-5 * fabs(l2), "batch split changes the loss: %.9g vs %.9g", l2,
          a + b);
    CHECK(fabs(l2 - off) > 1e-4, "dropout had no effect");
    CHECK(fabs(l2 - l_other) > 1e-4, "the next step drew the same masks");
    mt_gpt_free(&m, be);
    mt_params_free(&p);
}

/* The composed backend: the gradient check with the product ops called,
 * then loss and gradients bitwise those of the plain CPU backend. */
static void check_composed(void) {
    be = mt_compose_backend();
    long before[4];
    memcpy(before, mt_compose_calls, sizeof before);
    check_grads(0.0f, 1);
    check_grads(0.25f, 1);
    printf("product ops called: matmul_bias %ld, matmul_bias_gelu %ld, matmul_dgelu %ld, "
           "matmul_wgrad_bgrad %ld\n",
           mt_compose_calls[0] - before[0], mt_compose_calls[1] - before[1],
           mt_compose_calls[2] - before[2], mt_compose_calls[3] - before[3]);
    for (int i = 0; i < 4; i++)
        CHECK(mt_compose_calls[i] > before[i], "the model never called product op %d", i);
    mt_gpt m[2];
    mt_params p[2];
    double loss[2];
    int32_t x[B * T], y[B * T];
    tokens(x, y);
    mt_gpt_dropout d = {1, 7, 3, 0};
    for (int k = 0; k < 2; k++) {
        be = k ? mt_compose_backend() : mt_backend_cpu();
        setup(&m[k], &p[k], 0.25f, 1);
        loss[k] = loss_of(&m[k], &p[k], x, y, &d);
        mt_gpt_backward(&m[k], be, &p[k], x, y, 1.0f / (B * T), 0);
    }
    size_t differ = mt_test_bits_differ(p[0].grad, p[1].grad, p[0].numel);
    printf("composed vs plain CPU backend: loss %.17g vs %.17g, %zu of %zu gradients differ in "
           "bits\n",
           loss[1], loss[0], differ, p[0].numel);
    CHECK(m[1].use.mm_bias && m[1].use.mm_gelu && m[1].use.mm_dgelu && m[1].use.mm_wgrad &&
              !m[0].use.mm_bias,
          "composed: the product ops were not (only) in the composed model's use");
    CHECK(loss[0] == loss[1], "composed: loss %.17g, plain CPU %.17g", loss[1], loss[0]);
    CHECK(differ == 0, "composed: %zu gradients differ from the plain CPU's", differ);
    for (int k = 0; k < 2; k++) {
        mt_gpt_free(&m[k], k ? mt_compose_backend() : mt_backend_cpu());
        mt_params_free(&p[k]);
    }
    be = mt_backend_cpu();
}

/* matmul_bf16's calls by epilogue (MT_EPI_*), through the counting table */
static long epi_calls[4];
static void counted_matmul_bf16(int epi, int ta, int tb, int M, int N, int K, float alpha,
                                const uint16_t *A, int lda, const uint16_t *Bm, int ldb, float beta,
                                const float *bias, float *pre, float *C, float *db, int ldc) {
    epi_calls[epi]++;
    mt_backend_cpu()->matmul_bf16(epi, ta, tb, M, N, K, alpha, A, lda, Bm, ldb, beta, bias, pre, C,
                                  db, ldc);
}

/* bf16 products: a bf16 GPT (act_bf16, fused, dropout) on the CPU backend
 * takes matmul_bf16 (weights from the bf16 copy, stored inputs read
 * packed), and on the composed backend matmul_bf16 with every epilogue;
 * both give loss and gradients bitwise those of the same model on a CPU
 * table without matmul_bf16 (fp32 operands rounded to the same bf16 values
 * inside the products). */
static void check_bf16_products(int flash) {
    mt_backend plain = *mt_backend_cpu(), counted = *mt_compose_backend(), cpu = *mt_backend_cpu();
    plain.matmul_bf16 = NULL;
    counted.matmul_bf16 = counted_matmul_bf16;
    if (!flash) /* the unfused attention (the backward unpacks no attention output) */
        plain.flash_attention_forward = counted.flash_attention_forward =
            cpu.flash_attention_forward = NULL;
    const mt_backend *bes[3] = {&plain, &cpu, &counted};
    const char *name[3] = {"without matmul_bf16", "CPU", "composed"};
    mt_gpt m[3];
    mt_params p[3];
    double loss[3];
    int32_t x[B * T], y[B * T];
    tokens(x, y);
    mt_gpt_dropout d = {1, 7, 3, 0};
    mt_backend_cpu()->set_precision(1);
    for (int k = 0; k < 3; k++) {
        be = bes[k];
        setup_with(&m[k], &p[k], 0.25f, 1, 1, 1);
        loss[k] = loss_of(&m[k], &p[k], x, y, &d);
        mt_gpt_backward(&m[k], be, &p[k], x, y, 1.0f / (B * T), 0);
        CHECK(m[k].on16 == (k > 0), "%s: bf16 products %s", name[k], m[k].on16 ? "on" : "off");
        CHECK(m[k].use.flash == flash, "%s: flash attention %d", name[k], m[k].use.flash);
    }
    for (int k = 1; k < 3; k++) {
        size_t differ = mt_test_bits_differ(p[0].grad, p[k].grad, p[0].numel);
        printf("bf16 products (%s attention), %s vs %s: loss %.17g vs %.17g, %zu of %zu gradients "
               "differ in bits\n",
               flash ? "flash" : "unfused", name[k], name[0], loss[k], loss[0], differ, p[0].numel);
        CHECK(loss[k] == loss[0], "bf16 products (%s): loss %.17g, without %.17g", name[k], loss[k],
              loss[0]);
        CHECK(differ == 0, "bf16 products (%s): %zu gradients differ", name[k], differ);
    }
    printf(
        "matmul_bf16 epilogues called (composed): none %ld, bias %ld, bias+gelu %ld, dgelu %ld\n",
        epi_calls[MT_EPI_NONE], epi_calls[MT_EPI_BIAS], epi_calls[MT_EPI_BIAS_GELU],
        epi_calls[MT_EPI_DGELU]);
    for (int i = 0; i < 4; i++) CHECK(epi_calls[i] > 0, "matmul_bf16 epilogue %d never called", i);
    mt_backend_cpu()->set_precision(0);
    for (int k = 0; k < 3; k++) {
        mt_gpt_free(&m[k], bes[k]);
        mt_params_free(&p[k]);
    }
    be = mt_backend_cpu();
}

/* vocab_pad 8 against none: the same numbers but for rounding; the padding
 * exactly 0. */
static void check_padded(int fused) {
    mt_gpt m[2];
    mt_params p[2];
    double loss[2];
    int32_t x[B * T], y[B * T];
    tokens(x, y);
    mt_gpt_dropout d = {1, 7, 3, 0};
    for (int k = 0; k < 2; k++) {
        setup_padded(&m[k], &p[k], 0.25f, fused, k ? 8 : 1);
        loss[k] = loss_of(&m[k], &p[k], x, y, &d);
        mt_gpt_backward(&m[k], be, &p[k], x, y, 1.0f / (B * T), 0);
    }
    const mt_param *w0 = mt_params_find(&p[0], "wte.weight"),
                   *w1 = mt_params_find(&p[1], "wte.weight");
    int Vp = mt_gpt_vocab_padded(&m[1].cfg);
    CHECK(Vp == 16 && w1->pad_rows == 5 && w1->numel == (size_t)16 * NC && w0->pad_rows == 0,
          "padded: Vp %d, wte pad_rows %lld, numel %zu", Vp, (long long)w1->pad_rows, w1->numel);
    size_t pad_nonzero = 0, n = 0;
    /* the gradients without the padding, packed: g[0] unpadded, g[1] padded */
    float *g[2] = {malloc(p[0].numel * sizeof(float)), malloc(p[0].numel * sizeof(float))};
    for (int i = 0; i < p[0].n; i++) {
        const mt_param *a = &p[0].v[i], *b = &p[1].v[i];
        size_t nb = mt_param_block_numel(a);
        memcpy(g[0] + n, p[0].grad + a->offset, nb * sizeof(float));
        memcpy(g[1] + n, p[1].grad + b->offset, nb * sizeof(float));
        for (size_t j = nb; j < b->numel; j++)
            pad_nonzero += p[1].grad[b->offset + j] != 0.0f || p[1].data[b->offset + j] != 0.0f;
        n += nb;
    }
    double lrel = fabs(loss[1] - loss[0]) / fabs(loss[0]), gerr = mt_test_nerr(g[1], g[0], n);
    /* logits without targets: the first V columns of each row */
    for (int k = 0; k < 2; k++) mt_gpt_forward(&m[k], be, &p[k], x, NULL, B, T, NULL);
    float *z = malloc((size_t)B * T * V * sizeof(float));
    for (int r = 0; r < B * T; r++)
        memcpy(z + (size_t)r * V, m[1].logits + (size_t)r * Vp, (size_t)V * sizeof(float));
    double zerr = mt_test_nerr(z, m[0].logits, (size_t)B * T * V);
    printf("vocab_pad 8 (V %d held as %d rows), %s: loss rel err %.1e, gradients nerr %.1e, "
           "logits nerr %.1e, %zu pad elements not 0\n",
           V, Vp, fused ? "fused" : "unfused", lrel, gerr, zerr, pad_nonzero);
    CHECK(lrel <= 1e-6, "padded: loss %.17g, unpadded %.17g", loss[1], loss[0]);
    CHECK(gerr <= 1e-5, "padded: gradients normalized error %.2e > 1e-5", gerr);
    CHECK(zerr <= 1e-5, "padded: logits normalized error %.2e > 1e-5", zerr);
    CHECK(pad_nonzero == 0, "padded: %zu pad elements of wte or its gradient are not 0",
          pad_nonzero);
    free(g[0]), free(g[1]), free(z);
    /* AdamW with weight decay keeps a zero weight with zero gradients at 0 */
    float *pd = p[1].data + w1->offset + (size_t)V * NC,
          *pg = p[1].grad + w1->offset + (size_t)V * NC;
    size_t npad = (size_t)(Vp - V) * NC;
    float *mm = calloc(npad, sizeof(float)), *vv = calloc(npad, sizeof(float));
    for (int step = 1; step <= 3; step++)
        be->adamw_update(pd, pg, mm, vv, npad, 1e-2f, 0.9f, 0.95f, 1e-8f, 0.1f,
                         1.0f - powf(0.9f, (float)step), 1.0f - powf(0.95f, (float)step));
    size_t moved = 0;
    for (size_t j = 0; j < npad; j++) moved += pd[j] != 0.0f || mm[j] != 0.0f || vv[j] != 0.0f;
    CHECK(moved == 0, "AdamW moved %zu pad elements off 0", moved);
    free(mm), free(vv);
    for (int k = 0; k < 2; k++) {
        mt_gpt_free(&m[k], be);
        mt_params_free(&p[k]);
    }
}

static void check_errors(void) {
    mt_gpt m;
    mt_params p;
    mt_err e = {0};
    mt_gpt_config bad = {2, 3, 8, 6, 11, 0.0f, 0, 0, 1};
    mt_params_init(&p);
    CHECK(mt_gpt_build(&m, &bad, &p, &e) == MT_ERR_USAGE && strstr(e.msg, "not divisible"),
          "n_embd 8 with n_head 3: %s", e.msg);
    mt_params_free(&p);
    free(m.block);
    mt_gpt_config ok = {1, 2, 8, 6, 11, 0.0f, 0, 0, 1};
    mt_params_init(&p);
    memset(&e, 0, sizeof e);
    mt_gpt_build(&m, &ok, &p, &e);
    mt_params_alloc(&p, &e);
    CHECK(mt_gpt_alloc(&m, be, 2, 7, &e) == MT_ERR_USAGE && strstr(e.msg, "block_size"),
          "T 7 > block_size 6: %s", e.msg);
    mt_gpt_free(&m, be);
    mt_params_free(&p);
}

int main(void) {
    be = mt_backend_cpu();
    for (int fused = 0; fused <= 1; fused++) {
        check_grads(0.0f, fused);
        check_grads(0.25f, fused);
    }
    check_composed();
    check_bf16_products(1);
    check_bf16_products(0);
    check_padded(0);
    check_padded(1);
    check_dropout_layout();
    check_errors();
    return mt_test_finish("test_gpt_model");
}
