/* watchdog.c - deadlines on waits and the side channel that names the rank
 * behind (see watchdog.h; the design is argued in docs/PARALLEL.md). */
#include "parallel/watchdog.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define TAG_QUERY 1
#define TAG_REPLY 2
#define POLL_S    0.002 /* how often a polling wait looks at the side channel */
#define REPLY_MAX 3.0   /* the reply window: seconds a timed-out rank collects answers */
#define QUIET_S                                                                                    \
    7.0 /* with the reply window: a rank that left the report to another reports 10 s later */
#define RING     64 /* replies in flight per rank */
#define LIST_MAX 8  /* ranks named in the error line */

/* What a rank says about itself when asked. */
typedef struct {
    int32_t waiting;       /* 1: inside a wait; 0: asked while reporting */
    int32_t investigating; /* its own deadline passed: it is asking too */
    int32_t peer;          /* world rank of a point-to-point's partner, or -1 */
    int32_t pad;
    int64_t step;
    double waited_s; /* how long the wait has lasted */
    char op[24], comm[16], phase[16];
} wd_reply;

static struct {
    MPI_Comm side; /* duplicate of world: queries and replies only */
    int rank, size;
    double timeout; /* parallel.timeout; 0: plain waits */
    int armed;
    int64_t step;
    char phase[16];
    /* the wait in progress */
    const char *op;
    MPI_Comm comm;
    int peer;
    double since;
    int investigating;
    int deferred_to; /* a rank that asked before this one's deadline passed; -1: none */
    int lower_asker; /* a lower rank asking at the same time; -1: none */
    void (*on_abort)(void);
    wd_reply ring[RING];
    MPI_Request ring_req[RING]; /* a slot is reused only once its reply is sent */
    int ring_next;
} wd = {.side = MPI_COMM_NULL, .deferred_to = -1, .lower_asker = -1};

void mt_watchdog_init(MPI_Comm world) {
    for (int i = 0; i < RING; i++) wd.ring_req[i] = MPI_REQUEST_NULL;
    MPI_Comm_dup(world, &wd.side);
    MPI_Comm_set_name(wd.side, "watchdog");
    MPI_Comm_rank(world, &wd.rank);
    MPI_Comm_size(world, &wd.size);
    snprintf(wd.phase, sizeof wd.phase, "setup");
}

void mt_watchdog_free(void) {
    for (int i = 0; i < RING; i++) /* replies still going out (a query came at the very end) */
        if (wd.ring_req[i] != MPI_REQUEST_NULL) MPI_Wait(&wd.ring_req[i], MPI_STATUS_IGNORE);
    if (wd.side != MPI_COMM_NULL) MPI_Comm_free(&wd.side);
    wd.side = MPI_COMM_NULL;
    wd.timeout = 0.0;
}

void mt_watchdog_enable(double timeout_s) {
    wd.timeout = wd.side != MPI_COMM_NULL && timeout_s > 0 ? timeout_s : 0.0;
}

static _Thread_local int unwatched; /* this thread's waits are plain (not the trainer's) */

void mt_watchdog_unwatched_thread(void) {
    unwatched = 1;
}

int mt_watchdog_enabled(void) {
    return wd.timeout > 0 && !unwatched;
}

void mt_watchdog_phase(const char *phase, int64_t step, int armed) {
    snprintf(wd.phase, sizeof wd.phase, "%s", phase);
    wd.step = step;
    wd.armed = armed;
}

void mt_watchdog_on_abort(void (*fn)(void)) {
    wd.on_abort = fn;
}

static void nap(void) {
    struct timespec ms = {0, 1000000};
    nanosleep(&ms, NULL);
}

/* "dp", "tp", ... (mt_comm_layout names them); MPI_COMM_WORLD is "world". */
static void comm_name(MPI_Comm c, char *buf, size_t n) {
    char name[MPI_MAX_OBJECT_NAME] = "";
    int len = 0;
    if (c != MPI_COMM_NULL) MPI_Comm_get_name(c, name, &len);
    if (c == MPI_COMM_WORLD || strcmp(name, "MPI_COMM_WORLD") == 0)
        snprintf(name, sizeof name, "world");
    snprintf(buf, n, "%s", name[0] ? name : "?");
}

/* The world rank of rank peer of comm. */
static int world_rank(MPI_Comm c, int peer) {
    if (peer < 0 || c == MPI_COMM_NULL) return -1;
    MPI_Group g, w;
    int out = -1;
    MPI_Comm_group(c, &g);
    MPI_Comm_group(MPI_COMM_WORLD, &w);
    MPI_Group_translate_ranks(g, 1, &peer, w, &out);
    MPI_Group_free(&g);
    MPI_Group_free(&w);
    return out == MPI_UNDEFINED ? -1 : out;
}

static void describe(wd_reply *r, double now) {
    memset(r, 0, sizeof *r);
    r->waiting = wd.op != NULL;
    r->investigating = wd.investigating;
    r->step = wd.step;
    r->peer = wd.op ? world_rank(wd.comm, wd.peer) : -1;
    r->waited_s = wd.op ? now - wd.since : 0.0;
    snprintf(r->op, sizeof r->op, "%s", wd.op ? wd.op : "-");
    comm_name(wd.op ? wd.comm : MPI_COMM_NULL, r->comm, sizeof r->comm);
    snprintf(r->phase, sizeof r->phase, "%s", wd.phase);
}

/* Answers every query that has arrived. A query before this rank's own
 * deadline means another rank timed out first: that one reports. */
static void serve(void) {
    if (wd.timeout <= 0) return;
    for (;;) {
        int flag = 0, q = 0;
        MPI_Status st;
        MPI_Iprobe(MPI_ANY_SOURCE, TAG_QUERY, wd.side, &flag, &st);
        if (!flag) return;
        MPI_Recv(&q, 1, MPI_INT, st.MPI_SOURCE, TAG_QUERY, wd.side, MPI_STATUS_IGNORE);
        if (!wd.investigating && wd.deferred_to < 0) wd.deferred_to = st.MPI_SOURCE;
        if (wd.investigating && st.MPI_SOURCE < wd.rank &&
            (wd.lower_asker < 0 || st.MPI_SOURCE < wd.lower_asker))
            wd.lower_asker = st.MPI_SOURCE;
        int k = wd.ring_next++ % RING;
        if (wd.ring_req[k] != MPI_REQUEST_NULL) MPI_Wait(&wd.ring_req[k], MPI_STATUS_IGNORE);
        describe(&wd.ring[k], MPI_Wtime());
        MPI_Isend(&wd.ring[k], (int)sizeof wd.ring[k], MPI_BYTE, st.MPI_SOURCE, TAG_REPLY, wd.side,
                  &wd.ring_req[k]);
    }
}

/* Appends "rank R (op over comm, N s)" for a rank that answered. */
static void append_state(char *buf, size_t n, int rank, const wd_reply *r) {
    size_t len = strlen(buf);
    if (!r->waiting) {
        snprintf(buf + len, n - len, "rank %d (not waiting: %s, step %lld)", rank, r->phase,
                 (long long)r->step);
        return;
    }
    char peer[32] = "";
    if (r->peer >= 0) snprintf(peer, sizeof peer, " with rank %d", r->peer);
    snprintf(buf + len, n - len, "rank %d in %s%s over %s (step %lld, %s) for %.0f s", rank, r->op,
             peer, r->comm, (long long)r->step, r->phase, r->waited_s);
}

/* The ranks behind: those that did not answer; when all answered (a
 * deadlock), the ones at the lowest step. Written into behind as text. */
static int name_behind(const wd_reply *all, const int *answered, char *behind, size_t n) {
    int count = 0;
    int64_t low = INT64_MAX;
    for (int i = 0; i < wd.size; i++)
        if (!answered[i])
            count++;
        else if (all[i].step < low)
            low = all[i].step;
    behind[0] = '\0';
    int listed = 0, deadlock = count == 0;
    for (int i = 0; i < wd.size; i++) {
        int is = deadlock ? all[i].step == low : !answered[i];
        if (!is) continue;
        if (deadlock) count++;
        size_t len = strlen(behind);
        if (listed < LIST_MAX)
            snprintf(behind + len, n - len, "%s%d", listed ? ", " : "", i), listed++;
    }
    if (count > listed) {
        size_t len = strlen(behind);
        snprintf(behind + len, n - len, " and %d more", count - listed);
    }
    return deadlock ? -count : count;
}

/* Prints the one error line and ends the job with exit 5. */
static void report(const wd_reply *all, const int *answered) {
    char behind[256], others[1024] = "";
    int count = name_behind(all, answered, behind, sizeof behind);
    int listed = 0;
    for (int i = 0; i < wd.size && listed < LIST_MAX; i++) {
        if (i == wd.rank || !answered[i]) continue;
        size_t len = strlen(others);
        snprintf(others + len, sizeof others - len, "%s", listed ? "; " : "; waiting too: ");
        append_state(others, sizeof others, i, &all[i]), listed++;
    }
    char peer[32] = "", comm[16];
    int p = world_rank(wd.comm, wd.peer);
    if (p >= 0) snprintf(peer, sizeof peer, " with rank %d", p);
    comm_name(wd.comm, comm, sizeof comm);
    const char *what =
        count > 0 ? (count > 1 ? "ranks" : "rank") : "every rank waits; lowest step:";
    fprintf(stderr,
            "mpitrain: error: communication timeout at step %lld (%s): %s %s %s behind (%s) - "
            "rank %d waited %.0f s (parallel.timeout = %g s) in %s%s over %s%s\n"
            "mpitrain: hint: look at what the rank behind does (a stalled node, I/O, a hung "
            "GPU); raise parallel.timeout if its steps legitimately take that long (0 = off)\n",
            (long long)wd.step, wd.phase, what, behind, count > 0 ? (count > 1 ? "are" : "is") : "",
            count > 0 ? "not in any communication: stalled in computation or I/O, or hung"
                      : "a deadlock: ranks in different communication",
            wd.rank, MPI_Wtime() - wd.since, wd.timeout, wd.op, peer, comm, others);
    fflush(stderr);
    fflush(stdout);
    if (wd.on_abort) wd.on_abort();
    MPI_Abort(MPI_COMM_WORLD, MT_WATCHDOG_EXIT);
    exit(MT_WATCHDOG_EXIT);
}

/* Another rank timed out first and reports: answer its questions until the
 * job ends; should it not end (that rank died), report after QUIET_S. */
static void stay_quiet(void) {
    double t0 = MPI_Wtime();
    while (MPI_Wtime() - t0 < QUIET_S + REPLY_MAX) serve(), nap();
}

/* This rank's deadline passed: ask every rank what it does, collect the
 * answers for the reply window, and report unless a lower rank asks too. */
static void timed_out(void) {
    serve();
    if (wd.deferred_to >= 0) stay_quiet();
    wd.investigating = 1;
    static const int query = 1;
    for (int i = 0; i < wd.size; i++) {
        if (i == wd.rank) continue;
        MPI_Request req;
        MPI_Isend(&query, 1, MPI_INT, i, TAG_QUERY, wd.side, &req);
        MPI_Request_free(&req);
    }
    wd_reply *all = calloc((size_t)wd.size, sizeof *all);
    int *answered = calloc((size_t)wd.size, sizeof *answered);
    if (!all || !answered) MPI_Abort(MPI_COMM_WORLD, MT_WATCHDOG_EXIT);
    double t0 = MPI_Wtime(), window = wd.timeout / 2 < REPLY_MAX ? wd.timeout / 2 : REPLY_MAX;
    int got = 1;
    answered[wd.rank] = 1;
    describe(&all[wd.rank], t0);
    while (got < wd.size && MPI_Wtime() - t0 < window) {
        serve();
        int flag = 0;
        MPI_Status st;
        MPI_Iprobe(MPI_ANY_SOURCE, TAG_REPLY, wd.side, &flag, &st);
        if (!flag) {
            nap();
            continue;
        }
        wd_reply r;
        MPI_Recv(&r, (int)sizeof r, MPI_BYTE, st.MPI_SOURCE, TAG_REPLY, wd.side, MPI_STATUS_IGNORE);
        if (!answered[st.MPI_SOURCE]) got++;
        answered[st.MPI_SOURCE] = 1, all[st.MPI_SOURCE] = r;
        if (r.investigating && st.MPI_SOURCE < wd.rank &&
            (wd.lower_asker < 0 || st.MPI_SOURCE < wd.lower_asker))
            wd.lower_asker = st.MPI_SOURCE;
    }
    serve();
    if (wd.lower_asker >= 0) stay_quiet();
    report(all, answered);
}

typedef struct {
    MPI_Request *r;
    int n;
} wd_reqs;

static int reqs_done(void *arg) {
    wd_reqs *q = arg;
    int done = 0;
    MPI_Testall(q->n, q->r, &done, MPI_STATUSES_IGNORE);
    return done;
}

void mt_watchdog_wait_for(int (*done)(void *), void *arg, const char *op, MPI_Comm comm, int peer) {
    if (done(arg)) return;
    if (unwatched) { /* not the trainer's thread: no deadline, no side channel */
        while (!done(arg)) nap();
        return;
    }
    wd.op = op, wd.comm = comm, wd.peer = peer, wd.since = MPI_Wtime();
    double next = wd.since + POLL_S;
    while (!done(arg)) {
        double now = MPI_Wtime();
        if (now < next) continue;
        next = now + POLL_S;
        serve();
        if (wd.armed && now - wd.since >= wd.timeout) timed_out();
    }
    wd.op = NULL;
}

static int device_done(void *be) {
    return ((const mt_backend *)be)->queue_done();
}

void mt_watchdog_wait_device(const mt_backend *be, const char *op, MPI_Comm comm, int fence) {
    if (!be || be->host_memory) return;
    if (mt_watchdog_enabled() && be->queue_done)
        mt_watchdog_wait_for(device_done, (void *)be, op, comm, -1);
    else if (fence)
        be->synchronize();
}

void mt_watchdog_wait(MPI_Request *r, int n, const char *op, MPI_Comm comm, int peer) {
    if (unwatched) { /* a background thread: test and sleep, leave the cores to training */
        int done = 0;
        struct timespec pause_100us = {0, 100000};
        while (MPI_Testall(n, r, &done, MPI_STATUSES_IGNORE), !done) nanosleep(&pause_100us, NULL);
        return;
    }
    if (!mt_watchdog_enabled()) {
        MPI_Waitall(n, r, MPI_STATUSES_IGNORE);
        return;
    }
    wd_reqs q = {r, n};
    mt_watchdog_wait_for(reqs_done, &q, op, comm, peer);
}
