/*
 * gpt2_vocab.c - loads GPT-2's encoder.json (token string -> id) and
 * vocab.bpe (merges by rank) into the tables of gpt2_vocab.h, and
 * GPT-2's byte-to-unicode alphabet that both files are written in.
 *
 * The merge table is a small open-addressing hash (linear probing, keys are
 * two 16-bit ids in one uint32): C has no hash map, a Debian one (glib) would
 * be a new dependency for one fixed-size table of integers, and this one is a
 * dozen lines that the encoder inlines.
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "io/files.h"
#include "io/gpt2_vocab.h"
#include "io/sha256.h"

#define GPT2_PATH   4096
#define GPT2_MERGES 50000
#define GPT2_ALPHA  324 /* code points of the byte alphabet are < 0x144 */

/* GPT-2's bytes_to_unicode: printable Latin-1 bytes ('!'..'~', 0xA1..0xAC,
 * 0xAE..0xFF) stand for themselves, the other 68 bytes in increasing order
 * for U+0100, U+0101, ... Fills the inverse: code point -> byte, -1 if none. */
static void alphabet_inverse(int inv[GPT2_ALPHA]) {
    for (int c = 0; c < GPT2_ALPHA; c++) inv[c] = -1;
    int n = 0;
    for (int b = 0; b < 256; b++) {
        int printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
        inv[printable ? b : 256 + n++] = b;
    }
}

/* Turns s (UTF-8 in the byte alphabet) into the bytes it stands for, in place
 * at out (the result is never longer). Returns the length, -1 if s holds a
 * code point outside the alphabet. */
static long alphabet_bytes(const int inv[GPT2_ALPHA], const char *s, size_t n, uint8_t *out) {
    long m = 0;
    for (size_t i = 0; i < n;) {
        unsigned c = (uint8_t)s[i];
        if (c < 0x80) {
            i += 1;
        } else if ((c & 0xE0) == 0xC0 && i + 1 < n) {
            c = (c & 0x1F) << 6 | ((uint8_t)s[i + 1] & 0x3F);
            i += 2;
        } else {
            return -1;
        }
        if (c >= GPT2_ALPHA || inv[c] < 0) return -1;
        out[m++] = (uint8_t)inv[c];
    }
    return m;
}

/* Reads dir/file whole and checks its SHA-256 against want. */
static int read_pinned(const char *dir, const char *file, const char *want, char **buf, size_t *len,
                       mt_err *e) {
    char path[GPT2_PATH], hex[65];
    if (mt_path_fmt(path, sizeof path, e, "%s/%s", dir, file)) return e->code;
    if (mt_file_read(path, "GPT-2 vocabulary file", MT_ERR_DATA, buf, len, e)) {
        mt_err_hint(e, "run scripts/fetch_gpt2_vocab.sh --out %s", dir);
        return e->code;
    }
    mt_sha256_buf(*buf, *len, hex);
    if (strcmp(hex, want) != 0) {
        free(*buf);
        *buf = NULL;
        mt_err_set(e, MT_ERR_DATA,
                   "GPT-2 vocabulary file %s is corrupt or not GPT-2's: SHA-256 %s, expected %s",
                   path, hex, want);
        mt_err_hint(e, "fetch it again: scripts/fetch_gpt2_vocab.sh --force --out %s", dir);
    }
    return e->code;
}

/* A temporary string -> id index over t->bytes/t->off, for reading merges. */
typedef struct {
    int32_t *slot; /* [mask + 1], -1 = empty */
    uint32_t mask;
} vocab_index;

static uint32_t bytes_hash(const uint8_t *s, size_t n) {
    uint32_t h = 2166136261u; /* FNV-1a */
    for (size_t i = 0; i < n; i++) h = (h ^ s[i]) * 16777619u;
    return h;
}

static int32_t vocab_find(const mt_gpt2_vocab *t, const vocab_index *x, const uint8_t *s, size_t n,
                          int insert_id) {
    for (uint32_t i = bytes_hash(s, n) & x->mask;; i = (i + 1) & x->mask) {
        int32_t id = x->slot[i];
        if (id < 0) {
            if (insert_id >= 0) x->slot[i] = insert_id;
            return insert_id >= 0 ? insert_id : -1;
        }
        if (t->off[id + 1] - t->off[id] == n && !memcmp(t->bytes + t->off[id], s, n)) return id;
    }
}

/* encoder.json: {"token string": id, ...}, each id 0..50256 exactly once. */
static int load_encoder(mt_gpt2_vocab *t, const char *dir, const int inv[GPT2_ALPHA], mt_err *e) {
    char *text = NULL;
    size_t len = 0;
    if (read_pinned(dir, "encoder.json", MT_GPT2_ENCODER_SHA256, &text, &len, e)) return e->code;
    cJSON *root = cJSON_ParseWithLength(text, len);
    uint32_t *tlen = calloc(MT_GPT2_VOCAB, sizeof *tlen);
    char **tstr = calloc(MT_GPT2_VOCAB, sizeof *tstr);
    size_t total = 0, count = 0;
    if (!root || !cJSON_IsObject(root) || !tlen || !tstr)
        mt_err_set(e, MT_ERR_DATA, "%s/encoder.json is not a JSON object", dir);
    for (cJSON *it = root ? root->child : NULL; it && !e->code; it = it->next, count++) {
        double v = cJSON_IsNumber(it) ? it->valuedouble : -1;
        long id = (long)v;
        long m = alphabet_bytes(inv, it->string, strlen(it->string), (uint8_t *)it->string);
        if (v != (double)id || id < 0 || id >= MT_GPT2_VOCAB || tstr[id] || m <= 0)
            mt_err_set(e, MT_ERR_DATA, "%s/encoder.json: bad or repeated entry %ld", dir, id);
        else
            tstr[id] = it->string, tlen[id] = (uint32_t)m, total += (size_t)m;
    }
    if (!e->code && count != MT_GPT2_VOCAB)
        mt_err_set(e, MT_ERR_DATA, "%s/encoder.json has %zu tokens, expected %d", dir, count,
                   MT_GPT2_VOCAB);
    t->bytes = e->code ? NULL : malloc(total + 1);
    t->off = e->code ? NULL : malloc((MT_GPT2_VOCAB + 1) * sizeof *t->off);
    if (!e->code && (!t->bytes || !t->off))
        mt_err_set(e, MT_ERR_INTERNAL, "out of memory for the GPT-2 vocabulary");
    for (uint32_t id = 0, o = 0; !e->code && id <= MT_GPT2_VOCAB; id++) {
        t->off[id] = o;
        if (id < MT_GPT2_VOCAB) memcpy(t->bytes + o, tstr[id], tlen[id]), o += tlen[id];
    }
    cJSON_Delete(root);
    free(tlen);
    free(tstr);
    free(text);
    return e->code;
}

/* Parses "A B" (one line of vocab.bpe) into the ids of A, B and AB. */
static int merge_line(const mt_gpt2_vocab *t, const vocab_index *x, const int inv[GPT2_ALPHA],
                      char *line, size_t n, int32_t ids[3]) {
    char *sp = memchr(line, ' ', n);
    if (!sp) return -1;
    uint8_t buf[2 * 256];
    if (sp - line > 256 || n - (size_t)(sp - line) > 257) return -1;
    long na = alphabet_bytes(inv, line, (size_t)(sp - line), buf);
    long nb = na > 0 ? alphabet_bytes(inv, sp + 1, n - (size_t)(sp - line) - 1, buf + na) : -1;
    if (nb <= 0) return -1;
    ids[0] = vocab_find(t, x, buf, (size_t)na, -1);
    ids[1] = vocab_find(t, x, buf + na, (size_t)nb, -1);
    ids[2] = vocab_find(t, x, buf, (size_t)(na + nb), -1);
    return ids[0] < 0 || ids[1] < 0 || ids[2] < 0 ? -1 : 0;
}

/* vocab.bpe: "#version: 0.2", then one merge "A B" a line, rank = line - 1.
 * Each merge's parts must be bytes or made by an earlier line, and no token
 * is made twice (so no pair repeats): true of GPT-2's file, and what lets
 * gpt2_merge.c take pairs from a heap. */
static int load_merges(mt_gpt2_vocab *t, const char *dir, const int inv[GPT2_ALPHA], mt_err *e) {
    char *text = NULL;
    size_t len = 0;
    if (read_pinned(dir, "vocab.bpe", MT_GPT2_MERGES_SHA256, &text, &len, e)) return e->code;
    vocab_index x = {calloc(1u << 17, sizeof(int32_t)), (1u << 17) - 1};
    t->merges = malloc(((size_t)GPT2_MERGE_MASK + 1) * sizeof *t->merges);
    if (!x.slot || !t->merges) {
        free(x.slot);
        free(text);
        return mt_err_set(e, MT_ERR_INTERNAL, "out of memory for the GPT-2 merges");
    }
    memset(x.slot, 0xFF, (x.mask + 1) * sizeof *x.slot);
    for (uint32_t i = 0; i <= GPT2_MERGE_MASK; i++) t->merges[i].key = GPT2_MERGE_EMPTY;
    for (int32_t id = 0; id < MT_GPT2_VOCAB; id++)
        vocab_find(t, &x, t->bytes + t->off[id], t->off[id + 1] - t->off[id], id);
    for (int b = 0; b < 256 && !e->code; b++) { /* every single byte is a token */
        uint8_t c = (uint8_t)b;
        int32_t id = vocab_find(t, &x, &c, 1, -1);
        if (id < 0) mt_err_set(e, MT_ERR_DATA, "%s/encoder.json lacks byte %d", dir, b);
        t->byte_tok[b] = (uint16_t)(id < 0 ? 0 : id);
    }
    /* made[id]: a byte, or made by a merge read so far (gpt2_merge.c relies
     * on every merge's parts being made before it, and each token once) */
    uint8_t *made = calloc(MT_GPT2_VOCAB, 1);
    if (!made) mt_err_set(e, MT_ERR_INTERNAL, "out of memory for the GPT-2 merges");
    for (int b = 0; b < 256 && made; b++) made[t->byte_tok[b]] = 1;
    char *p = memchr(text, '\n', len), *end = text + len;
    long rank = 0;
    for (p = p ? p + 1 : end; p < end && !e->code; rank++) {
        char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t n = (size_t)((nl ? nl : end) - p);
        int32_t ids[3];
        if (rank >= GPT2_MERGES || merge_line(t, &x, inv, p, n, ids)) {
            mt_err_set(e, MT_ERR_DATA, "%s/vocab.bpe: line %ld is not a merge of two tokens", dir,
                       rank + 2);
            break;
        }
        if (!made[ids[0]] || !made[ids[1]] || made[ids[2]]) {
            mt_err_set(e, MT_ERR_DATA,
                       "%s/vocab.bpe: the merge on line %ld uses a token no earlier merge makes, "
                       "or makes one again",
                       dir, rank + 2);
            break;
        }
        made[ids[2]] = 1;
        uint32_t key = (uint32_t)ids[0] << 16 | (uint32_t)ids[1], i = gpt2_pair_slot(key);
        while (t->merges[i].key != GPT2_MERGE_EMPTY && t->merges[i].key != key)
            i = (i + 1) & GPT2_MERGE_MASK;
        t->merges[i] = (gpt2_merge){key, (uint32_t)rank, (uint16_t)ids[2]};
        p = nl ? nl + 1 : end;
    }
    if (!e->code && rank != GPT2_MERGES)
        mt_err_set(e, MT_ERR_DATA, "%s/vocab.bpe has %ld merges, expected %d", dir, rank,
                   GPT2_MERGES);
    free(made);
    free(x.slot);
    free(text);
    return e->code;
}

int mt_gpt2_vocab_load(mt_gpt2_vocab *v, const char *dir, mt_err *e) {
    memset(v, 0, sizeof *v);
    struct stat st;
    int found = stat(dir, &st) == 0, err = errno;
    if (!found || !S_ISDIR(st.st_mode)) {
        mt_err_set(e, MT_ERR_DATA, "GPT-2 vocabulary folder %s %s", dir,
                   found           ? "is not a folder"
                   : err == ENOENT ? "not found"
                                   : "is not a readable folder");
        mt_err_hint(e, "run scripts/fetch_gpt2_vocab.sh --out %s (or pass --vocab-dir DIR)", dir);
        return e->code;
    }
    int inv[GPT2_ALPHA];
    alphabet_inverse(inv);
    if (load_encoder(v, dir, inv, e) || load_merges(v, dir, inv, e)) mt_gpt2_vocab_free(v);
    return e->code;
}

void mt_gpt2_vocab_free(mt_gpt2_vocab *v) {
    free(v->merges);
    free(v->off);
    free(v->bytes);
    memset(v, 0, sizeof *v);
}
