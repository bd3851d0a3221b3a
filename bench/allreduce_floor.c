/*
 * allreduce_floor.c - the time of a plain MPI_Allreduce (MPI_SUM of floats,
 * in place) of N floats: the floor that the gradient-sync benchmark
 * (scripts/bench_gradsync.sh, issue 17 part 4) compares mpitrain's sums
 * against, on the same ranks and network.
 *
 * Each repetition: the buffer refilled (rank r holds (r + 1) / 1024 in every
 * element, so sums neither grow nor underflow from one rep to the next), a
 * barrier, then one timed MPI_Allreduce. A rep's time is the slowest rank's
 * (MPI_MAX over ranks, after the last rep); --warmup untimed reps first.
 * After the last rep the result is checked against the exact sum
 * (p (p + 1) / 2048, within float rounding), so a broken call cannot pass
 * as fast. Rank 0 prints one line:
 *
 *   allreduce floats=N bytes=B ranks=P reps=R min_ms=.. median_ms=.. mean_ms=..
 *
 * usage: mpirun -np P allreduce_floor --floats N --reps R [--warmup W]
 * Exit status: 0 done, 1 an MPI call failed or the sum was wrong, 2 bad
 * arguments.
 */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void mpi_check(int rc, const char *what, int line) {
    if (rc == MPI_SUCCESS) return;
    char msg[MPI_MAX_ERROR_STRING];
    int len = 0;
    MPI_Error_string(rc, msg, &len);
    fprintf(stderr, "allreduce_floor: error: %s failed: %s at line %d\n", what, msg, line);
    MPI_Abort(MPI_COMM_WORLD, 1);
}

#define MK(call) mpi_check((call), #call, __LINE__)

typedef struct {
    long floats, reps, warmup;
} options;

static int loud; /* rank 0: every rank parses the arguments, one reports them */

static void usage(FILE *f) {
    fprintf(f, "usage: mpirun -np P allreduce_floor --floats N --reps R [--warmup W]\n"
               "  times R in-place MPI_Allreduce (MPI_SUM, float) of N floats, a barrier\n"
               "  before each, after W untimed ones (default 3); a rep's time is the slowest\n"
               "  rank's. Rank 0 prints one line: min, median and mean ms.\n");
}

/* 0 when s is an integer in [lo, hi] (into *out); otherwise an error line. */
static int parse_long(const char *opt, const char *s, long lo, long hi, long *out) {
    char *end = NULL;
    errno = 0;
    long v = s ? strtol(s, &end, 10) : 0;
    if (!s || !*s || *end || errno || v < lo || v > hi) {
        if (loud)
            fprintf(stderr, "allreduce_floor: error: %s needs an integer in [%ld, %ld], got '%s'\n",
                    opt, lo, hi, s ? s : "");
        return 1;
    }
    *out = v;
    return 0;
}

/* 0: options parsed; 1: bad arguments (message printed); -1: --help. */
static int parse_options(int argc, char **argv, options *o) {
    o->floats = o->reps = 0;
    o->warmup = 3;
    for (int i = 1; i < argc; i += 2) { /* every option but --help takes a value */
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) return -1;
        long *dst = !strcmp(a, "--floats")   ? &o->floats
                    : !strcmp(a, "--reps")   ? &o->reps
                    : !strcmp(a, "--warmup") ? &o->warmup
                                             : NULL;
        if (!dst) {
            if (loud) fprintf(stderr, "allreduce_floor: error: unknown argument '%s'\n", a);
            return 1;
        }
        if (parse_long(a, v, dst == &o->warmup ? 0 : 1, INT_MAX, dst)) return 1;
    }
    if (o->floats == 0 || o->reps == 0) {
        if (loud) fprintf(stderr, "allreduce_floor: error: --floats and --reps are required\n");
        return 1;
    }
    return 0;
}

static int cmp_double(const void *x, const void *y) {
    double a = *(const double *)x, b = *(const double *)y;
    return (a > b) - (a < b);
}

/* One rep: refill, barrier, the timed sum. Returns its seconds on this rank. */
static double one_rep(float *buf, long n, int rank) {
    float v = (float)(rank + 1) / 1024.0f;
    for (long i = 0; i < n; i++) buf[i] = v;
    MK(MPI_Barrier(MPI_COMM_WORLD));
    double t0 = MPI_Wtime();
    MK(MPI_Allreduce(MPI_IN_PLACE, buf, (int)n, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD));
    return MPI_Wtime() - t0;
}

/* Rank 0: the line, from every rep's slowest-rank time t (sorted here). */
static void report(const options *o, int size, double *t) {
    double mean = 0.0;
    for (long i = 0; i < o->reps; i++) mean += t[i];
    mean /= (double)o->reps;
    qsort(t, (size_t)o->reps, sizeof *t, cmp_double);
    long h = o->reps / 2;
    double median = o->reps % 2 ? t[h] : 0.5 * (t[h - 1] + t[h]);
    printf("allreduce floats=%ld bytes=%ld ranks=%d reps=%ld min_ms=%.4f median_ms=%.4f "
           "mean_ms=%.4f\n",
           o->floats, o->floats * (long)sizeof(float), size, o->reps, 1e3 * t[0], 1e3 * median,
           1e3 * mean);
}

int main(int argc, char **argv) {
    MK(MPI_Init(&argc, &argv));
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    int rank, size;
    MK(MPI_Comm_rank(MPI_COMM_WORLD, &rank));
    MK(MPI_Comm_size(MPI_COMM_WORLD, &size));
    options o;
    loud = rank == 0;
    int rc = parse_options(argc, argv, &o);
    if (rc) {
        if (rank == 0) usage(rc < 0 ? stdout : stderr);
        MPI_Finalize();
        return rc < 0 ? 0 : 2;
    }
    float *buf = malloc((size_t)o.floats * sizeof *buf);
    double *t = malloc((size_t)o.reps * sizeof *t);
    if (!buf || !t) {
        fprintf(stderr, "allreduce_floor: error: out of memory for %ld floats\n", o.floats);
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    for (long i = 0; i < o.warmup; i++) one_rep(buf, o.floats, rank);
    for (long i = 0; i < o.reps; i++) t[i] = one_rep(buf, o.floats, rank);
    MK(MPI_Reduce(rank == 0 ? MPI_IN_PLACE : t, t, (int)o.reps, MPI_DOUBLE, MPI_MAX, 0,
                  MPI_COMM_WORLD));
    /* the exact sum of (r + 1) / 1024 over ranks; float rounding allowed */
    double want = (double)size * (size + 1) / 2048.0;
    int wrong = fabs((double)buf[0] - want) > 1e-5 * want ||
                fabs((double)buf[o.floats - 1] - want) > 1e-5 * want;
    MK(MPI_Allreduce(MPI_IN_PLACE, &wrong, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD));
    if (rank == 0 && wrong)
        fprintf(stderr, "allreduce_floor: error: the sum is wrong (%g, expected %g)\n",
                (double)buf[0], want);
    else if (rank == 0)
        report(&o, size, t);
    free(buf);
    free(t);
    MPI_Finalize();
    return wrong ? 1 : 0;
}
