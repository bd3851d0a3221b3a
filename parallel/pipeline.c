/* pipeline.c - GPipe and 1F1B schedules over paired exchanges (see pipeline.h). */
#include "pipeline.h"

#include <stdlib.h>
#include <string.h>

int mt_pipe_slots(int schedule, int stage, int stages, int m) {
    if (schedule == MT_PIPE_SCHED_GPIPE) return m;
    int k = stages - stage;
    return k < m ? k : m;
}

/* Activations live in the backend's memory, not the host's. */
static int on_device(const mt_pipe *p) {
    return p->be && !p->be->host_memory;
}

/* A buffer for activations the callbacks read: the backend's memory. */
static float *act_alloc(const mt_pipe *p, size_t n) {
    if (on_device(p)) return p->be->alloc(n ? n : 1);
    return malloc((n ? n : 1) * sizeof(float));
}

static void act_free(const mt_pipe *p, float *x) {
    if (!x) return;
    if (on_device(p))
        p->be->free(x);
    else
        free(x);
}

int mt_pipe_init(mt_pipe *p) {
    p->nslots = mt_pipe_slots(p->schedule, p->stage, p->stages, p->microbatches);
    p->in_buf = calloc((size_t)p->nslots, sizeof *p->in_buf);
    if (!p->in_buf) return -1;
    for (int s = 0; s < p->nslots; s++)
        if (p->prev >= 0 && !(p->in_buf[s] = act_alloc(p, p->in_n))) return -1;
    if (p->next >= 0 && !(p->dout_buf = act_alloc(p, p->out_n))) return -1;
    p->held = p->peak = 0;
    return 0;
}

static int slot_of(const mt_pipe *p, int mb) {
    return mb % p->nslots;
}

static void hold(mt_pipe *p, int delta) {
    p->held += delta;
    if (p->held > p->peak) p->peak = p->held;
}

/* The exchanges. Each names what this stage sends and receives; the
 * neighbour makes the mirror image at the same point of its schedule. */
static void exchange(mt_pipe *p, const float *sbuf, size_t sn, int to, float *rbuf, size_t rn,
                     int from) {
    double t0 = MPI_Wtime();
    mt_xcomm_exchange(p->x, sbuf, sn, to, rbuf, rn, from);
    p->wait_s += MPI_Wtime() - t0;
}

/* input of micro-batch mb from the previous stage */
static void recv_forward(mt_pipe *p, int mb) {
    if (p->prev >= 0) exchange(p, NULL, 0, -1, p->in_buf[slot_of(p, mb)], p->in_n, p->prev);
}

static void send_forward(mt_pipe *p, const float *out) {
    if (p->next >= 0) exchange(p, out, p->out_n, p->next, NULL, 0, -1);
}

static void recv_backward(mt_pipe *p) {
    if (p->next >= 0) exchange(p, NULL, 0, -1, p->dout_buf, p->out_n, p->next);
}

static void send_backward(mt_pipe *p, const float *din) {
    if (p->prev >= 0) exchange(p, din, p->in_n, p->prev, NULL, 0, -1);
}

/* 1F1B's steady pairs: output forward + an output gradient back (with the
 * next stage), input gradient back + the next input (with the previous) */
static void send_forward_recv_backward(mt_pipe *p, const float *out) {
    if (p->next >= 0) exchange(p, out, p->out_n, p->next, p->dout_buf, p->out_n, p->next);
}

static void send_backward_recv_forward(mt_pipe *p, const float *din, int mb) {
    if (p->prev >= 0)
        exchange(p, din, p->in_n, p->prev, p->in_buf[slot_of(p, mb)], p->in_n, p->prev);
}

/* Busy time. On the CPU the callbacks' work is done when they return: the
 * host's clock around them. On a device they only queue it: the backend's
 * timer marks around each (consecutive pairs; no other code marks), timed
 * in mt_pipe_collect after the step's one wait, so that nothing here waits
 * for the device. */
static int device_timed(const mt_pipe *p) {
    return p->be && p->be->timer_mark && p->be->timer_seconds && p->be->timer_reset;
}

static void work_begin(mt_pipe *p, double *t0) {
    *t0 = MPI_Wtime();
    if (device_timed(p)) p->be->timer_mark(), p->marks++;
}

static void work_end(mt_pipe *p, double t0) {
    if (device_timed(p))
        p->be->timer_mark(), p->marks++;
    else
        p->busy_s += MPI_Wtime() - t0;
}

void mt_pipe_collect(mt_pipe *p) {
    if (!device_timed(p)) return;
    for (int i = 0; i + 1 < p->marks; i += 2) p->busy_s += p->be->timer_seconds(i, i + 1);
    p->be->timer_reset();
    p->marks = 0;
}

static const float *fwd(mt_pipe *p, int mb) {
    int s = slot_of(p, mb);
    double t0;
    work_begin(p, &t0);
    const float *out = p->forward(p->ctx, s, mb, p->prev >= 0 ? p->in_buf[s] : NULL);
    work_end(p, t0);
    hold(p, 1);
    return out;
}

static const float *bwd(mt_pipe *p, int mb) {
    int s = slot_of(p, mb);
    double t0;
    work_begin(p, &t0);
    const float *din = p->backward(p->ctx, s, mb, p->prev >= 0 ? p->in_buf[s] : NULL,
                                   p->next >= 0 ? p->dout_buf : NULL);
    work_end(p, t0);
    hold(p, -1);
    return din;
}

void mt_pipe_step(mt_pipe *p) {
    int m = p->microbatches;
    if (p->schedule == MT_PIPE_SCHED_GPIPE) {
        for (int i = 0; i < m; i++) {
            recv_forward(p, i);
            send_forward(p, fwd(p, i));
        }
        for (int i = 0; i < m; i++) {
            recv_backward(p);
            send_backward(p, bwd(p, i));
        }
        return;
    }
    int warm = p->stages - p->stage - 1;
    if (warm > m) warm = m;
    int steady = m - warm;
    for (int i = 0; i < warm; i++) {
        recv_forward(p, i);
        send_forward(p, fwd(p, i));
    }
    if (steady > 0) recv_forward(p, warm);
    for (int i = 0; i < steady; i++) {
        /* forward warm+i (its input is here), backward i */
        send_forward_recv_backward(p, fwd(p, warm + i));
        const float *din = bwd(p, i);
        if (i == steady - 1)
            send_backward(p, din);
        else
            send_backward_recv_forward(p, din, warm + i + 1);
    }
    for (int i = steady; i < m; i++) {
        recv_backward(p);
        send_backward(p, bwd(p, i));
    }
}

void mt_pipe_forward_only(mt_pipe *p, int n) {
    for (int i = 0; i < n; i++) {
        recv_forward(p, 0); /* into slot 0 */
        const float *out = p->forward(p->ctx, 0, i, p->prev >= 0 ? p->in_buf[0] : NULL);
        send_forward(p, out);
    }
}

void mt_pipe_free(mt_pipe *p) {
    for (int s = 0; p->in_buf && s < p->nslots; s++) act_free(p, p->in_buf[s]);
    free(p->in_buf);
    act_free(p, p->dout_buf);
    p->in_buf = NULL;
    p->dout_buf = NULL;
}
