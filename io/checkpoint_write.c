/*
 * checkpoint_write.c - writing a checkpoint: rank 0 checks the room and lays
 * out the file (attributes, config, every tensor's chunks), then all ranks
 * write their shares of the tensors with collective parallel HDF5, sync,
 * and rank 0 renames the file into place and writes its .sha256. A
 * watchdog ends a write that hangs (see mt_ckpt_write in checkpoint.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include "base/fault.h"
#include "io/checkpoint_private.h"
#include "io/files.h"
#include "io/h5util.h"
#include "io/sha256.h"

/* A temporary name: path (< MT_CKPT_PATH) + ".tmp." + a pid. */
#define TMP_LEN (MT_CKPT_PATH + 32)

/* Rank 0, serial: creates the dataset of tensor t (chunked as its geometry
 * says, Fletcher32, no fill value) and places every chunk in the file
 * without writing its data.
 *
 * Parallel HDF5 1.10 needs every chunk of a filtered dataset allocated before
 * a collective write (it tells chunks apart by file address), and when it
 * allocates them itself, at creation or at opening for writing, it writes
 * the whole tensor once in fill values: twice the bytes of the checkpoint.
 * So rank 0 creates the dataset serially with incremental allocation and
 * gives each chunk a 4-byte placeholder (H5Dwrite_chunk); the collective
 * write then moves each chunk to full-size space and writes it once. That
 * holds only for a chunk one rank overwrites whole: any other chunk (the
 * partial last one, one that straddles two writers' rows) gets a real,
 * checksummed chunk of zeros instead, since the collective write reads and
 * unfilters it before merging the new elements (a placeholder there fails to
 * unfilter on one rank and leaves the others waiting in the collective call
 * until the checkpoint timeout: keep mt_ckpt_row_writer in step with
 * mt_ckpt_share). The placeholders never outlive the write: the file is
 * renamed into place only after every chunk has been written. Rank 0 may
 * hold none of t (another stage's tensor): everything here follows from the
 * shard description and the layout. */
static int create_tensor(hid_t f, const mt_tensor_view *t, int dp, int tp, const float *zeros,
                         mt_err *e) {
    mt_ckpt_geom g;
    mt_ckpt_geometry(t, dp, tp, &g);
    hsize_t start[MT_VIEW_MAX_DIMS] = {0}, count[MT_VIEW_MAX_DIMS];
    hid_t space = H5Screate_simple(g.ndim, g.gdims, NULL);
    hid_t lcpl = H5Pcreate(H5P_LINK_CREATE), dcpl = H5Pcreate(H5P_DATASET_CREATE);
    H5Pset_create_intermediate_group(lcpl, 1);
    H5Pset_chunk(dcpl, g.ndim, g.chunk);
    H5Pset_fletcher32(dcpl);
    H5Pset_alloc_time(dcpl, H5D_ALLOC_TIME_INCR);
    H5Pset_fill_time(dcpl, H5D_FILL_TIME_NEVER);
    errno = 0; /* a cause below is this tensor's, not an earlier call's */
    hid_t ds = H5Dcreate2(f, t->path, H5T_IEEE_F32LE, space, lcpl, dcpl, H5P_DEFAULT);
    int bad = ds < 0;
    const uint32_t placeholder = 0;
    /* chunks across sd > 0: each lies in one block, split by rows alike */
    hsize_t across = g.sd > 0 ? g.gdims[g.sd] / g.len : 1;
    for (hsize_t r = 0; !bad && r < g.gdims[0]; r += g.chunk[0]) {
        int whole = r + g.chunk[0] <= g.gdims[0];
        for (hsize_t q = r + 1, w = mt_ckpt_row_writer(&g, r); whole && q < r + g.chunk[0]; q++)
            whole = mt_ckpt_row_writer(&g, q) == w;
        memcpy(count, g.chunk, sizeof count);
        if (r + count[0] > g.gdims[0]) count[0] = g.gdims[0] - r;
        start[0] = r;
        for (hsize_t a = 0; !bad && a < across; a++) {
            if (g.sd > 0) start[g.sd] = a * g.len;
            if (whole) {
                bad =
                    H5Dwrite_chunk(ds, H5P_DEFAULT, 0, start, sizeof placeholder, &placeholder) < 0;
            } else {
                hid_t mspace = H5Screate_simple(g.ndim, count, NULL);
                H5Sselect_hyperslab(space, H5S_SELECT_SET, start, NULL, count, NULL);
                bad = H5Dwrite(ds, H5T_NATIVE_FLOAT, mspace, space, H5P_DEFAULT, zeros) < 0;
                H5Sclose(mspace);
            }
        }
    }
    if (ds >= 0) H5Dclose(ds);
    H5Pclose(dcpl);
    H5Pclose(lcpl);
    H5Sclose(space);
    if (bad) mt_err_set(e, MT_ERR_CKPT, "cannot create tensor %s: %s", t->path, mt_h5_cause(errno));
    return bad;
}

/* Bytes of the largest chunk of the views' tensors written by dp x tp ranks a stage. */
static size_t max_chunk_bytes(const mt_tensor_view *views, int nv, int dp, int tp) {
    size_t n = 0;
    for (int i = 0; i < nv; i++) {
        mt_ckpt_geom g;
        mt_ckpt_geometry(&views[i], dp, tp, &g);
        size_t b = sizeof(float);
        for (int d = 0; d < g.ndim; d++) b *= (size_t)g.chunk[d];
        if (b > n) n = b;
    }
    return n;
}

/* Rank 0, serial: everything but the tensors' data. */
static int create_structure(hid_t f, const mt_ckpt_meta *m, const char *config,
                            const mt_tensor_view *views, int nv, const mt_comm *c, mt_err *e) {
    if (mt_ckpt_write_header(f, m, config, e)) return e->code;
    float *zeros = calloc(1, max_chunk_bytes(views, nv, c->dp_size, c->tp_size));
    if (!zeros) return mt_err_set(e, MT_ERR_CKPT, "out of memory creating a checkpoint");
    for (int k = 0; k < nv; k++)
        if (create_tensor(f, &views[k], c->dp_size, c->tp_size, zeros, e)) break;
    free(zeros);
    return e->code;
}

/* The error of a failed write of checkpoint path (tensor: the tensor being
 * written, or NULL), naming the system's reason when there is one. */
static int ckpt_fail(mt_err *e, const char *path, const char *tensor, const char *cause) {
    return mt_err_set(e, MT_ERR_CKPT, "cannot write checkpoint %s%s%s%s%s%s", path,
                      tensor ? " (tensor " : "", tensor ? tensor : "", tensor ? ")" : "",
                      cause[0] ? ": " : "", cause);
}

/* The reason a write of checkpoint path failed: HDF5's or errno's (cause),
 * or, when that is empty (OMPIO hands HDF5 a short count and the errno is
 * lost), a full file system when the folder has less than a chunk free. */
static const char *write_cause(const char *path, size_t chunk_bytes, const char *cause) {
    char dir[MT_CKPT_PATH];
    struct statvfs v;
    if (cause[0]) return cause;
    mt_file_dir(path, dir, sizeof dir);
    if (statvfs(dir, &v) == 0 && (double)v.f_bavail * (double)v.f_frsize < (double)chunk_bytes)
        return "no space left on the device";
    return cause;
}

/* Collective: writes this rank's share of the chunks of tensor t. Only the
 * owner's copies are written (held, not a mirror); the ranks holding the
 * same block (the data-parallel group for a split tensor, every rank of the
 * stage for a whole one) each write a share (mt_ckpt_writer). */
static int write_tensor(const mt_comm *c, hid_t f, hid_t dxpl, const mt_tensor_view *t,
                        const char *path, mt_err *e) {
    mt_ckpt_geom g;
    mt_ckpt_geometry(t, c->dp_size, c->tp_size, &g);
    hid_t ds = H5Dopen2(f, t->path, H5P_DEFAULT);
    hid_t space = ds >= 0 ? H5Dget_space(ds) : H5Screate_simple(g.ndim, g.gdims, NULL);
    hsize_t lo = 0, hi = 0;
    if (t->held && !t->mirror)
        mt_ckpt_share(&g, mt_ckpt_writer(&g, c->dp_rank, c->tp_rank, c->tp_size), &lo, &hi);
    hid_t mspace;
    mt_ckpt_select_rows(&g, lo, hi, space, &mspace);
    /* data holds block elements [begin, begin + count), whole rows that
     * contain [lo, hi) (mt_ckpt_check_views) */
    const float *buf = t->data ? t->data + (lo * g.inner - (hsize_t)t->begin) : mt_ckpt_no_data();
    errno = 0;
    int bad = ds < 0 || H5Dwrite(ds, H5T_NATIVE_FLOAT, mspace, space, dxpl, buf) < 0;
    if (bad) { /* the cause before the next call clears it */
        size_t chunk = sizeof(float);
        for (int d = 0; d < g.ndim; d++) chunk *= (size_t)g.chunk[d];
        ckpt_fail(e, path, t->path, write_cause(path, chunk, mt_h5_cause(errno)));
    }
    H5Sclose(mspace);
    if (ds >= 0) H5Dclose(ds);
    H5Sclose(space);
    return bad;
}

/* ---- room, watchdog ---- */

/* Bytes of the tensors the views hold in the file, at their global shapes. */
static double tensor_bytes(const mt_tensor_view *views, int nv) {
    double n = 0;
    for (int i = 0; i < nv; i++) n += (double)mt_view_global_numel(&views[i]);
    return n * sizeof(float);
}

static int check_room(const char *path, double need, mt_err *e) {
    char dir[MT_CKPT_PATH];
    mt_file_dir(path, dir, sizeof dir);
    struct statvfs v;
    if (statvfs(dir, &v) != 0) return MT_OK; /* the write itself will report it */
    double avail = (double)v.f_bavail * (double)v.f_frsize;
    if (avail < need) {
        mt_err_set(e, MT_ERR_CKPT,
                   "no room for checkpoint %s: it needs about %.1f MB, %s has %.1f MB free", path,
                   need / 1e6, dir, avail / 1e6);
        mt_err_hint(e, "free space there, lower checkpoint.keep_last, or set checkpoint.dir");
    }
    return e->code;
}

static char wd_msg[MT_ERR_MSG_LEN + MT_ERR_HINT_LEN + 64], wd_tmp[TMP_LEN], wd_dir[TMP_LEN];
static int wd_rank;
static double wd_timeout;
static pid_t wd_pid0;  /* rank 0's process, */
static int wd_beside0; /* when this rank is the lowest rank > 0 on its host */
/* wd_armed: a write is being watched (wd_gen counts the writes, so that a
 * watchdog thread of an earlier write ends); wd_filling: every rank is
 * inside fill_file, the temporary exists; wd_speaks: this rank's own write
 * failed (failed_inside) */
static volatile sig_atomic_t wd_armed, wd_gen, wd_filling, wd_speaks;

/* Whether rank 0 is gone (known only for the rank that watches it). */
static int rank0_gone(void) {
    return wd_beside0 && kill(wd_pid0, 0) != 0 && errno == ESRCH;
}

/* While filling: whether another rank has already reported and ended the
 * write (it removed the temporary; its folder is still there). */
static int abandoned(void) {
    return wd_filling && access(wd_tmp, F_OK) != 0 && access(wd_dir, F_OK) == 0;
}

/* The watchdog's thread: four times a second while its write is watched, it
 * ends this rank quietly when another rank has reported (abandoned). It
 * alone asks the file system while nothing has failed here, and SIGALRM is
 * blocked in it: a file system that stalls stalls this thread, never the
 * alarm's handler. */
static void *wd_thread(void *arg) {
    sig_atomic_t gen = (sig_atomic_t)(intptr_t)arg;
    sigset_t block;
    sigemptyset(&block);
    sigaddset(&block, SIGALRM);
    pthread_sigmask(SIG_BLOCK, &block, NULL);
    while (wd_armed && wd_gen == gen) {
        struct timespec t = {0, 250 * 1000 * 1000};
        nanosleep(&t, NULL);
        if (wd_armed && wd_gen == gen && abandoned()) _exit(MT_ERR_CKPT);
    }
    return NULL;
}

/* SIGALRM, the deadline (only async-signal-safe calls): every rank exits 4
 * and one rank speaks: rank 0; a rank whose own write failed
 * (failed_inside); or the one rank that watches rank 0 (the lowest other
 * rank on its host) when it finds it gone (killed: nobody else would say
 * why the run ended). A rank whose own write failed takes a token first,
 * the removal of the temporary: only the one whose unlink succeeds speaks,
 * and the others find the temporary gone and leave without a word
 * (wd_thread), so one line is printed in all, also under a launcher that
 * lets the other ranks run on when one exits. Rank 0 and the watcher speak
 * without touching the file system, which may be what stalls. */
static void on_watchdog(int sig) {
    (void)sig;
    if (!wd_armed) return;
    int speak = wd_rank == 0 || rank0_gone();
    if (wd_speaks) speak = !wd_filling || unlink(wd_tmp) == 0 || access(wd_dir, F_OK) != 0;
    if (speak) {
        ssize_t w = write(2, wd_msg, strlen(wd_msg));
        (void)w;
        unlink(wd_tmp); /* after the line: a stalled file system may hold it */
    }
    _exit(MT_ERR_CKPT);
}

/* Collective: where rank 0 runs, for rank0_gone, and which rank watches it:
 * the lowest rank > 0 on rank 0's host (one rank, so one error line). */
static void find_rank0(const mt_comm *c) {
    struct {
        long pid;
        char host[256];
    } me = {(long)getpid(), ""}, r0;
    gethostname(me.host, sizeof me.host - 1);
    r0 = me;
    mt_coll_bcast(c->world, 0, &r0, sizeof r0);
    wd_pid0 = (pid_t)r0.pid;
    int watcher = c->rank != 0 && strcmp(r0.host, me.host) == 0 ? c->rank : INT_MAX;
    mt_coll_min_ints(c->world, &watcher, 1);
    wd_beside0 = watcher == c->rank;
}

static void arm_watchdog(const mt_comm *c, const char *tmp, int64_t step, double timeout) {
    wd_rank = c->rank, wd_speaks = 0, wd_timeout = timeout, wd_filling = 0;
    find_rank0(c);
    snprintf(wd_tmp, sizeof wd_tmp, "%s", tmp);
    mt_file_dir(tmp, wd_dir, sizeof wd_dir);
    snprintf(wd_msg, sizeof wd_msg,
             "mpitrain: error: the checkpoint write of step %lld did not finish within %.0f s "
             "(checkpoint.timeout): a rank failed inside the collective write, or the file "
             "system stalls; the previous checkpoint and `latest` are intact%s\n",
             (long long)step, timeout, c->rank ? " (rank 0 is gone; this is a later rank)" : "");
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_watchdog;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGALRM, &sa, NULL);
    wd_gen = (sig_atomic_t)(wd_gen + 1);
    wd_armed = 1;
    pthread_t t; /* detached: it ends within a quarter second of its write */
    if (pthread_create(&t, NULL, wd_thread, (void *)(intptr_t)wd_gen) == 0) pthread_detach(t);
    alarm((unsigned)(timeout < 1 ? 1 : timeout > 1e9 ? 1e9 : timeout));
}

static void disarm_watchdog(void) {
    wd_armed = 0;
    alarm(0);
}

/* This rank's write failed inside the collective write (a full disk, an I/O
 * error): the other ranks may now wait in a collective call of HDF5 that
 * this rank never makes, and the agreement after the write never comes. So
 * the watchdog is cut to a grace of GRACE_S (or a third of
 * checkpoint.timeout when shorter: it rings before the others' watchdogs),
 * and it is this rank that reports, with the reason it knows; the others
 * then find the temporary gone and leave at once (wd_thread). If the ranks
 * do reach the agreement, that ends the write as usual. */
#define GRACE_S 10.0
static void failed_inside(const mt_err *local) {
    char who[32] = ""; /* the rank named when it is not rank 0 (docs/TRAINING.md) */
    if (wd_rank) snprintf(who, sizeof who, " [rank %d]", wd_rank);
    snprintf(wd_msg, sizeof wd_msg,
             "mpitrain: error: %s%s\nmpitrain: hint: the previous checkpoint and `latest` "
             "are intact; free space or mend the file system, then resume (checkpoint.resume = "
             "auto)\n",
             local->msg, who);
    wd_speaks = 1;
    double grace = wd_timeout / 3 < GRACE_S ? wd_timeout / 3 : GRACE_S;
    unsigned g = (unsigned)(grace < 1 ? 1 : grace), left = alarm(0);
    alarm(left && left < g ? left : g);
}

/* Test-only: MPITRAIN_TEST_STALL_CKPT=STEP stops the writer of that step's
 * checkpoint midway (after the weights), so a test can kill a rank there. */
static void test_stall(const mt_comm *c, int64_t step) {
    const char *s = getenv("MPITRAIN_TEST_STALL_CKPT");
    if (!s || atoll(s) != step) return;
    if (c->rank == 0) {
        printf("test hook: stalling the checkpoint write of step %lld\n", (long long)step);
        fflush(stdout);
    }
    for (;;) pause();
}

/* ---- writing ---- */

/* Every rank: the views name the tensors of a checkpoint of optimizer kind:
 * /model/<name>, or /optim/<state>/<name> with a state of that kind. */
static int check_paths(const mt_tensor_view *views, int nv, const char *kind, mt_err *e) {
    const char *states[MT_CKPT_MAX_STATES];
    int ns = mt_ckpt_state_names(kind, states);
    if (ns < 0) return mt_err_set(e, MT_ERR_INTERNAL, "unknown optimizer '%s'", kind);
    for (int i = 0; i < nv; i++) {
        const char *p = views[i].path;
        int ok = strncmp(p, "/model/", 7) == 0 && p[7];
        for (int s = 0; s < ns && !ok; s++) {
            size_t n = strlen(states[s]);
            ok = strncmp(p, "/optim/", 7) == 0 && strncmp(p + 7, states[s], n) == 0 &&
                 p[7 + n] == '/' && p[8 + n];
        }
        if (!ok)
            return mt_err_set(e, MT_ERR_INTERNAL,
                              "tensor %s is not a weight or %s optimizer state of a checkpoint", p,
                              kind);
    }
    return MT_OK;
}

/* Collective: every rank writes its share of every tensor. */
static int write_data(const mt_comm *c, hid_t f, const char *tmp, const char *path,
                      const mt_ckpt_meta *m, const mt_tensor_view *views, int nv, mt_err *e) {
    /* After each tensor, start the write-back of what is written so far, so
     * that the final fsync has little left to wait for: the disk works while
     * the next tensors are checksummed and copied. */
    int fd = open(tmp, O_RDONLY);
    mt_err local = {0}; /* every rank makes every collective call, even after an error */
    hid_t dxpl = H5Pcreate(H5P_DATASET_XFER);
    H5Pset_dxpl_mpio(dxpl, H5FD_MPIO_COLLECTIVE);
    /* Most chunks are written whole by one rank, and HDF5 gives any chunk that
     * several ranks write to one of them, which merges the others' elements
     * first: so the collective call may write chunks with independent MPI-IO,
     * no two-phase aggregation through other ranks. */
    H5Pset_dxpl_mpio_collective_opt(dxpl, H5FD_MPIO_INDIVIDUAL_IO);
    for (int k = 0; k < nv; k++) {
        if (k > 0 && strncmp(views[k].path, "/model/", 7) != 0 &&
            strncmp(views[k - 1].path, "/model/", 7) == 0)
            test_stall(c, m->step); /* after the weights */
        if (write_tensor(c, f, dxpl, &views[k], path, &local) && !wd_speaks) failed_inside(&local);
        if (k == 0) mt_fault_at(MT_FAULT_CKPT_DATA, m->step); /* a test aid (base/fault.h) */
        if (fd >= 0) sync_file_range(fd, 0, 0, SYNC_FILE_RANGE_WRITE);
    }
    if (fd >= 0) close(fd);
    H5Pclose(dxpl);
    if (local.code) *e = local;
    return e->code;
}

/* The core driver's buffer, kept when HDF5 closes the file: at H5Fclose it
 * flushes the file into the buffer (superblock, checksums) and hands it to
 * image_free, which keeps it instead of freeing it; n follows the buffer's
 * size (the file's end is in its superblock: image_length). */
typedef struct {
    void *buf;
    size_t n;
} image_keep;

static void *image_malloc(size_t size, H5FD_file_image_op_t op, void *udata) {
    (void)op;
    void *p = malloc(size);
    if (p) ((image_keep *)udata)->n = size;
    return p;
}

static void *image_realloc(void *ptr, size_t size, H5FD_file_image_op_t op, void *udata) {
    (void)op;
    void *p = realloc(ptr, size);
    if (p) ((image_keep *)udata)->n = size;
    return p;
}

/* HDF5 copies the udata with its property list and the file: every copy
 * is the one image_keep, which create_file owns. */
static void *image_udata_copy(void *udata) {
    return udata;
}

static herr_t image_udata_free(void *udata) {
    (void)udata;
    return 0;
}

static herr_t image_free(void *ptr, H5FD_file_image_op_t op, void *udata) {
    image_keep *k = udata;
    if (op == H5FD_FILE_IMAGE_OP_FILE_CLOSE && !k->buf)
        k->buf = ptr;
    else
        free(ptr);
    return 0;
}

/* The file's length in its image: the end-of-file address of its version 2
 * or 3 superblock (HDF5's file format: signature 8 bytes, version, size of
 * offsets O, size of lengths, flags, then the base, extension, end-of-file
 * and root addresses, O bytes each, little-endian), or 0. The core driver's
 * buffer grows in whole increments, past the end of the file. */
static size_t image_length(const unsigned char *image, size_t n) {
    if (n < 12 || memcmp(image, "\211HDF\r\n\032\n", 8) != 0 || (image[8] != 2 && image[8] != 3))
        return 0;
    size_t o = image[9], at = 12 + 2 * o;
    if (o == 0 || o > 8 || n < at + o) return 0;
    uint64_t eof = 0;
    for (size_t i = o; i-- > 0;) eof = eof << 8 | image[at + i];
    return eof > 0 && eof <= n ? (size_t)eof : 0;
}

/* Rank 0: writes the n bytes of image to tmp (created); errno's text, or "". */
static const char *write_image(const char *tmp, const char *image, size_t n) {
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    size_t done = 0;
    while (fd >= 0 && done < n) {
        errno = 0;
        ssize_t w = write(fd, image + done, n - done);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) break;
        done += (size_t)w;
    }
    int err = fd < 0 ? errno : done < n ? (errno ? errno : ENOSPC) : 0;
    if (fd >= 0 && close(fd) != 0 && !err) err = errno;
    return err ? strerror(err) : "";
}

/* Rank 0, serial: lays out the whole file in memory (HDF5's core driver),
 * then writes that image to tmp itself. A file that HDF5 writes and then
 * fails to close (a write error while flushing its metadata) stays
 * half-closed inside HDF5 1.10 and crashes the library's clean-up at
 * MPI_Finalize; an image in memory cannot fail so, and a failed write of
 * it is an ordinary error. The image is the core driver's own buffer, taken
 * at H5Fclose through the public file image callbacks (image_keep): no
 * second copy, and HDF5 has written its final superblock into it. */
static int create_file(const mt_comm *c, const char *tmp, const char *path, const mt_ckpt_meta *m,
                       const char *config_text, const mt_tensor_view *views, int nv, mt_err *e) {
    image_keep keep = {NULL, 0};
    H5FD_file_image_callbacks_t cb = {
        image_malloc, NULL, image_realloc, image_free, image_udata_copy, image_udata_free, &keep};
    hid_t fapl = mt_ckpt_fapl(MPI_COMM_NULL);
    H5Pset_fapl_core(fapl, 1 << 20, 0); /* grown 1 MiB at a time, no backing file */
    hid_t f = H5Pset_file_image_callbacks(fapl, &cb) < 0
                  ? H5I_INVALID_HID
                  : H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
    H5Pclose(fapl);
    if (f < 0) return ckpt_fail(e, path, NULL, "cannot create the file's image in memory");
    if (create_structure(f, m, config_text, views, nv, c, e)) {
        char was[MT_ERR_MSG_LEN];
        snprintf(was, sizeof was, "%s", e->msg);
        mt_err_clear(e);
        ckpt_fail(e, path, NULL, was);
    }
    if (H5Fclose(f) < 0 && !e->code) ckpt_fail(e, path, NULL, "cannot close the file's image");
    size_t n = keep.buf ? image_length(keep.buf, keep.n) : 0;
    if (!n && !e->code) ckpt_fail(e, path, NULL, "HDF5 kept no image of the file");
    const char *why = e->code ? "" : write_image(tmp, keep.buf, n);
    free(keep.buf);
    if (why[0]) {
        char dir[MT_CKPT_PATH];
        struct stat st;
        mt_file_dir(path, dir, sizeof dir);
        ckpt_fail(e, path, NULL, why);
        if (stat(dir, &st) != 0)
            mt_err_hint(e,
                        "the checkpoint folder %s is gone (removed during the run?); restore it "
                        "and resume, or resume from elsewhere",
                        dir);
    }
    return e->code;
}

/* Collective: opens tmp with MPI-IO and writes every rank's data into it;
 * then each rank makes its own writes durable (parallel file systems sync
 * per client). */
static int fill_file(const mt_comm *c, const char *tmp, const char *path, const mt_ckpt_meta *m,
                     const mt_tensor_view *views, int nv, mt_err *e) {
    hid_t fapl = mt_ckpt_fapl(c->world);
    errno = 0;
    hid_t f = H5Fopen(tmp, H5F_ACC_RDWR, fapl);
    if (f < 0) { /* the cause before H5Pclose clears HDF5's error stack */
        ckpt_fail(e, path, NULL, mt_h5_cause(errno));
        H5Pclose(fapl);
        return e->code;
    }
    H5Pclose(fapl);
    wd_filling = 1; /* every rank agreed that rank 0 made tmp */
    write_data(c, f, tmp, path, m, views, nv, e);
    errno = 0;
    if (H5Fclose(f) < 0) { /* collective: the others may wait in it (failed_inside) */
        ckpt_fail(e, path, NULL, mt_h5_cause(errno));
        if (!wd_speaks) failed_inside(e);
    }
    if (!e->code) {
        int fd = open(tmp, O_RDONLY);
        if (fd < 0 || fsync(fd) != 0)
            mt_err_set(e, MT_ERR_CKPT, "cannot sync checkpoint %s: %s", path, strerror(errno));
        if (fd >= 0) close(fd);
    }
    wd_filling = 0; /* before the agreement that lets rank 0 rename tmp */
    return e->code;
}

int mt_ckpt_write_sidecar(const char *path, char sha_hex[72], mt_err *e) {
    if (mt_sha256_file(path, sha_hex, e)) return e->code;
    char side[MT_CKPT_PATH + 16], line[MT_CKPT_PATH + 96]; /* path < MT_CKPT_PATH */
    snprintf(side, sizeof side, "%s.sha256", path);
    const char *base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
    snprintf(line, sizeof line, "%s  %s\n", sha_hex, base);
    return mt_file_write_atomic(side, line, strlen(line), e);
}

void mt_ckpt_tune_malloc(void) {
    /* HDF5's filter pipeline allocates a fresh buffer per chunk; glibc would
     * mmap each one and fault in every page again. Keeping buffers up to
     * 64 MiB on the heap, and freed memory there, lets them be reused. */
    static int tuned;
    if (!tuned) {
        mallopt(M_MMAP_THRESHOLD, 64 << 20);
        mallopt(M_TRIM_THRESHOLD, 256 << 20);
        tuned = 1;
    }
}

int mt_ckpt_write(const mt_comm *c, const char *path, const mt_ckpt_meta *meta,
                  const char *config_text, const mt_tensor_view *views, int nv, double timeout_s,
                  double *write_s, char sha_hex[72], mt_err *e) {
    mt_ckpt_tune_malloc();
    mt_ckpt_meta m = *meta;
    mt_coll_bcast(c->world, 0, &m, sizeof m);
    char tmp[TMP_LEN] = "";
    if (c->rank == 0 && strlen(path) >= MT_CKPT_PATH)
        mt_err_set(e, MT_ERR_CKPT,
                   "checkpoint path too long (%zu characters, at most %d): %.60s...", strlen(path),
                   MT_CKPT_PATH - 1, path);
    else if (c->rank == 0)
        mt_file_tmp_name(path, tmp, sizeof tmp);
    mt_coll_bcast(c->world, 0, tmp, sizeof tmp);
    double bytes = tensor_bytes(views, nv);
    if (c->rank == 0 && !e->code)
        check_room(path, 1.02 * bytes + (double)strlen(config_text) + 1e6, e);
    if (!e->code) check_paths(views, nv, m.optim_kind, e);
    if (!e->code) mt_ckpt_check_views(c, views, nv, 1, e);
    if (mt_comm_agree(c, e)) return e->code;
    arm_watchdog(c, tmp, m.step, timeout_s > 0 ? timeout_s : 300.0 + bytes / 20e6);
    mt_h5_quiet();
    double t0 = mt_wtime();
    /* rank 0 lays out the file; then every rank writes its part of the data */
    if (c->rank == 0) create_file(c, tmp, path, &m, config_text, views, nv, e);
    if (!mt_comm_agree(c, e)) fill_file(c, tmp, path, &m, views, nv, e);
    if (mt_comm_agree(c, e)) {
        disarm_watchdog();
        if (c->rank == 0) unlink(tmp);
        return e->code;
    }
    mt_fault_at(MT_FAULT_CKPT_WRITE, m.step); /* a test aid (base/fault.h) */
    if (c->rank == 0 && mt_file_commit(tmp, path, e)) e->code = MT_ERR_CKPT;
    /* the watchdog stays armed through the agreements: a rank that died
     * after the data leaves the others waiting in them */
    if (!mt_comm_agree(c, e)) {
        *write_s = mt_wtime() - t0;
        if (c->rank == 0 && sha_hex) mt_ckpt_write_sidecar(path, sha_hex, e);
        if (e->code) e->code = MT_ERR_CKPT;
        mt_comm_agree(c, e);
    }
    disarm_watchdog();
    return e->code;
}
