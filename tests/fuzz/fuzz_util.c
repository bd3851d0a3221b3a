/* fuzz_util.c - see fuzz_util.h. */
#include "fuzz_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

uint8_t fz_u8(fz_in *in) {
    if (in->n == 0) return 0;
    in->n--;
    return *in->p++;
}

uint16_t fz_u16(fz_in *in) {
    uint16_t lo = fz_u8(in);
    return (uint16_t)(lo | fz_u8(in) << 8);
}

uint64_t fz_u64(fz_in *in) {
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v |= (uint64_t)fz_u8(in) << (8 * i);
    return v;
}

unsigned fz_pick(fz_in *in, unsigned n) {
    return n ? fz_u8(in) % n : 0;
}

size_t fz_str(fz_in *in, char *buf, size_t max) {
    size_t want = fz_u8(in), k = 0;
    while (k < want && k + 1 < max && in->n > 0) {
        uint8_t c = fz_u8(in);
        if (c) buf[k++] = (char)c;
    }
    buf[k] = '\0';
    return k;
}

void fz_edits_parse(fz_edits *ed, const uint8_t *data, size_t size, unsigned nslots) {
    memset(ed, 0, sizeof *ed);
    fz_in in = {data, size};
    if (nslots > FZ_MAX_SLOTS) abort(); /* the target's bug */
    while (in.n > 0) {
        unsigned k = fz_pick(&in, nslots);
        size_t len = fz_u8(&in);
        if (len > in.n) len = in.n;
        ed->slot[k].p = in.p;
        ed->slot[k].n = len;
        in.p += len;
        in.n -= len;
    }
}

static char tmp_path[8][256];
static char tmp_tag[8][32];

/* A crash leaves its files behind (they are the evidence); a normal exit not. */
static void remove_tmp(void) {
    for (int i = 0; i < 8 && tmp_tag[i][0]; i++) unlink(tmp_path[i]);
}

const char *fz_tmp(const char *tag) {
    if (!tmp_tag[0][0]) atexit(remove_tmp);
    for (int i = 0; i < 8; i++) {
        if (tmp_tag[i][0] && strcmp(tmp_tag[i], tag) == 0) return tmp_path[i];
        if (!tmp_tag[i][0]) {
            struct stat st;
            const char *dir = stat("/dev/shm", &st) == 0 && S_ISDIR(st.st_mode) ? "/dev/shm"
                              : getenv("TMPDIR")                                ? getenv("TMPDIR")
                                                                                : "/tmp";
            snprintf(tmp_tag[i], sizeof tmp_tag[i], "%s", tag);
            snprintf(tmp_path[i], sizeof tmp_path[i], "%s/mpitrain-fuzz-%d-%s", dir, (int)getpid(),
                     tag);
            return tmp_path[i];
        }
    }
    abort(); /* more tags than slots: the target's bug */
}

void fz_write_file(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f || (n && fwrite(data, 1, n, f) != n) || fclose(f) != 0) {
        fprintf(stderr, "fuzz: cannot write scratch file %s\n", path);
        abort();
    }
}

void fz_check_err(const mt_err *e, const char *what) {
    if (e->code >= MT_ERR_INTERNAL && e->code <= MT_ERR_REGISTRY && e->msg[0]) return;
    fprintf(stderr, "fuzz: %s returned code %d with message '%s'\n", what, e->code, e->msg);
    abort();
}

void fz_report(const char *what, const mt_err *e) {
    static int print = -1;
    if (print < 0) print = getenv("MT_FUZZ_PRINT") != NULL;
    if (print) fprintf(stderr, "%s: %s\n", what, e->code ? e->msg : "ok");
}
