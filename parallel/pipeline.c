/* pipeline.c - GPipe and 1F1B schedules over MPI point-to-point (see pipeline.h). */
#include "pipeline.h"

#include <stdlib.h>
#include <string.h>

#define TAG_ACT  101
#define TAG_GRAD 102

int mt_pipe_slots(int schedule, int stage, int stages, int m) {
    if (schedule == MT_PIPE_SCHED_GPIPE) return m;
    int k = stages - stage;
    return k < m ? k : m;
}

static float *falloc(size_t n) {
    return malloc((n ? n : 1) * sizeof(float));
}

/* Activations live in the backend's memory, not the host's. */
static int on_device(const mt_pipe *p) {
    return p->be && !p->be->host_memory;
}

/* A buffer for activations the callbacks read: the backend's memory. */
static float *act_alloc(const mt_pipe *p, size_t n) {
    return on_device(p) ? p->be->alloc(n ? n : 1) : falloc(n);
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
    p->dsend = calloc((size_t)p->nslots, sizeof *p->dsend);
    p->asend = calloc((size_t)p->nslots, sizeof *p->asend);
    p->hrecv = NULL;
    p->act_req = malloc((size_t)p->nslots * sizeof *p->act_req);
    p->grad_req = malloc((size_t)p->nslots * sizeof *p->grad_req);
    if (!p->in_buf || !p->dsend || !p->asend || !p->act_req || !p->grad_req) return -1;
    for (int s = 0; s < p->nslots; s++) p->act_req[s] = p->grad_req[s] = MPI_REQUEST_NULL;
    for (int s = 0; s < p->nslots; s++) {
        if (p->prev >= 0 &&
            (!(p->in_buf[s] = act_alloc(p, p->in_n)) || !(p->dsend[s] = falloc(p->in_n))))
            return -1;
        if (p->next >= 0 && on_device(p) && !(p->asend[s] = falloc(p->out_n))) return -1;
    }
    if (p->next >= 0 && !(p->dout_buf = act_alloc(p, p->out_n))) return -1;
    if (on_device(p)) {
        size_t n = p->in_n > p->out_n ? p->in_n : p->out_n;
        if (!(p->hrecv = falloc(n))) return -1;
    }
    p->held = p->peak = 0;
    return 0;
}

/* Sends and receives in chunks MPI's int counts can hold. */
#define CHUNK ((size_t)1 << 28)

static void wait_timed(mt_pipe *p, MPI_Request *r) {
    double t0 = MPI_Wtime();
    MPI_Wait(r, MPI_STATUS_IGNORE);
    p->wait_s += MPI_Wtime() - t0;
}

static void recv(mt_pipe *p, float *dst, size_t n, int from, int tag) {
    float *buf = on_device(p) ? p->hrecv : dst;
    size_t i = 0;
    do { /* at least one message, so an empty one still pairs with its send */
        MPI_Request r;
        int cnt = (int)(n - i < CHUNK ? n - i : CHUNK);
        MPI_Irecv(buf + i, cnt, MPI_FLOAT, from, tag, p->comm, &r);
        wait_timed(p, &r);
        i += CHUNK;
    } while (i < n);
    if (on_device(p)) p->be->to_device(dst, buf, n);
}

/* Starts sending n floats; *r completes the last piece (earlier ones are
 * waited on here: messages this large are rare). */
static void send(mt_pipe *p, const float *buf, size_t n, int to, int tag, MPI_Request *r) {
    size_t i = 0;
    do {
        int cnt = (int)(n - i < CHUNK ? n - i : CHUNK);
        if (*r != MPI_REQUEST_NULL) wait_timed(p, r);
        MPI_Isend(buf + i, cnt, MPI_FLOAT, to, tag, p->comm, r);
        i += CHUNK;
    } while (i < n);
}

/* On a device, the callbacks only queue work: wait for it, so busy_s
 * (and the bubble reported from it) counts the computation itself. */
static void finish_compute(const mt_pipe *p) {
    if (on_device(p)) p->be->synchronize();
}

/* Sends slot s's output (its previous send has completed). */
static void send_act(mt_pipe *p, const float *out, int s) {
    if (on_device(p)) {
        p->be->to_host(p->asend[s], out, p->out_n);
        out = p->asend[s];
    }
    send(p, out, p->out_n, p->next, TAG_ACT, &p->act_req[s]);
}

static int slot_of(const mt_pipe *p, int mb) {
    return mb % p->nslots;
}

static void fwd(mt_pipe *p, int mb) {
    int s = slot_of(p, mb);
    /* the slot's previous output must have left before it is overwritten */
    if (p->act_req[s] != MPI_REQUEST_NULL) wait_timed(p, &p->act_req[s]);
    const float *in = NULL;
    if (p->prev >= 0) {
        recv(p, p->in_buf[s], p->in_n, p->prev, TAG_ACT);
        in = p->in_buf[s];
    }
    double t0 = MPI_Wtime();
    const float *out = p->forward(p->ctx, s, mb, in);
    finish_compute(p);
    p->busy_s += MPI_Wtime() - t0;
    if (p->next >= 0) send_act(p, out, s);
}

static void bwd(mt_pipe *p, int mb) {
    int s = slot_of(p, mb);
    const float *dout = NULL;
    if (p->next >= 0) {
        recv(p, p->dout_buf, p->out_n, p->next, TAG_GRAD);
        dout = p->dout_buf;
    }
    if (p->grad_req[s] != MPI_REQUEST_NULL) wait_timed(p, &p->grad_req[s]);
    double t0 = MPI_Wtime();
    const float *din = p->backward(p->ctx, s, mb, p->prev >= 0 ? p->in_buf[s] : NULL, dout);
    finish_compute(p);
    p->busy_s += MPI_Wtime() - t0;
    if (p->prev >= 0) {
        if (on_device(p))
            p->be->to_host(p->dsend[s], din, p->in_n);
        else
            memcpy(p->dsend[s], din, p->in_n * sizeof(float));
        send(p, p->dsend[s], p->in_n, p->prev, TAG_GRAD, &p->grad_req[s]);
    }
}

static void finish_sends(mt_pipe *p) {
    for (int s = 0; s < p->nslots; s++) {
        if (p->act_req[s] != MPI_REQUEST_NULL) wait_timed(p, &p->act_req[s]);
        if (p->grad_req[s] != MPI_REQUEST_NULL) wait_timed(p, &p->grad_req[s]);
    }
}

static void hold(mt_pipe *p, int delta) {
    p->held += delta;
    if (p->held > p->peak) p->peak = p->held;
}

void mt_pipe_step(mt_pipe *p) {
    int m = p->microbatches;
    if (p->schedule == MT_PIPE_SCHED_GPIPE) {
        for (int i = 0; i < m; i++) fwd(p, i), hold(p, 1);
        for (int i = 0; i < m; i++) bwd(p, i), hold(p, -1);
    } else {
        int warm = p->stages - p->stage - 1;
        if (warm > m) warm = m;
        for (int i = 0; i < warm; i++) fwd(p, i), hold(p, 1);
        for (int i = 0; i < m - warm; i++) {
            fwd(p, warm + i), hold(p, 1);
            bwd(p, i), hold(p, -1);
        }
        for (int i = m - warm; i < m; i++) bwd(p, i), hold(p, -1);
    }
    finish_sends(p);
}

void mt_pipe_forward_only(mt_pipe *p, int n) {
    for (int i = 0; i < n; i++) {
        if (p->act_req[0] != MPI_REQUEST_NULL) wait_timed(p, &p->act_req[0]);
        const float *in = NULL;
        if (p->prev >= 0) {
            recv(p, p->in_buf[0], p->in_n, p->prev, TAG_ACT);
            in = p->in_buf[0];
        }
        const float *out = p->forward(p->ctx, 0, i, in);
        if (p->next >= 0) send_act(p, out, 0);
    }
    finish_sends(p);
}

void mt_pipe_free(mt_pipe *p) {
    for (int s = 0; p->in_buf && s < p->nslots; s++) act_free(p, p->in_buf[s]);
    for (int s = 0; p->dsend && s < p->nslots; s++) free(p->dsend[s]);
    for (int s = 0; p->asend && s < p->nslots; s++) free(p->asend[s]);
    free(p->in_buf);
    free(p->dsend);
    free(p->asend);
    free(p->hrecv);
    act_free(p, p->dout_buf);
    p->asend = NULL;
    p->hrecv = NULL;
    free(p->act_req);
    free(p->grad_req);
    p->in_buf = p->dsend = NULL;
    p->dout_buf = NULL;
    p->act_req = p->grad_req = NULL;
}
