/*
 * config.c - INI parsing (through inih), --set overrides, validation and
 * help text, all driven by the table in config_keys.c.
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <ini.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "io/registry.h"

#define NKEYS_MAX        128
#define ENUM_CHOICES_MAX 16 /* values of one enum key */

static int nkeys(void) {
    int n = 0;
    while (mt_cfg_keys[n].section) n++;
    return n;
}

static const mt_cfg_key *find_key(const char *section, const char *key) {
    for (const mt_cfg_key *k = mt_cfg_keys; k->section; k++)
        if (strcmp(k->section, section) == 0 && strcmp(k->key, key) == 0) return k;
    return NULL;
}

static int section_exists(const char *section) {
    for (const mt_cfg_key *k = mt_cfg_keys; k->section; k++)
        if (strcmp(k->section, section) == 0) return 1;
    return 0;
}

/* Edit distance, to suggest the key a typo meant. */
static int edit_distance(const char *a, const char *b) {
    int la = (int)strlen(a), lb = (int)strlen(b);
    if (la > 63 || lb > 63) return 99;
    int d[64][64];
    for (int i = 0; i <= la; i++) d[i][0] = i;
    for (int j = 0; j <= lb; j++) d[0][j] = j;
    for (int i = 1; i <= la; i++)
        for (int j = 1; j <= lb; j++) {
            int c = d[i - 1][j - 1] + (a[i - 1] != b[j - 1]);
            if (d[i - 1][j] + 1 < c) c = d[i - 1][j] + 1;
            if (d[i][j - 1] + 1 < c) c = d[i][j - 1] + 1;
            d[i][j] = c;
        }
    return d[la][lb];
}

static void suggest_key(const char *section, const char *key, mt_err *e) {
    const mt_cfg_key *best = NULL;
    int bestd = 3;
    for (const mt_cfg_key *k = mt_cfg_keys; k->section; k++) {
        int d = edit_distance(key, k->key);
        if (strcmp(k->section, section) != 0) d += 1;
        if (d < bestd) bestd = d, best = k;
    }
    if (best)
        mt_err_hint(e, "did you mean %s.%s? 'mpitrain train --help-config' lists every key",
                    best->section, best->key);
    else
        mt_err_hint(e, "'mpitrain train --help-config' lists every key");
}

static void *field(mt_config *c, const mt_cfg_key *k) {
    return (char *)c + k->offset;
}

static int in_range(const mt_cfg_key *k, double v) {
    if (k->min_exclusive ? !(v > k->min) : !(v >= k->min)) return 0;
    if (k->max_exclusive ? !(v < k->max) : !(v <= k->max)) return 0;
    return 1;
}

static void range_text(const mt_cfg_key *k, char *buf, size_t n) {
    int has_max = k->max < 1e299; /* NOMAX (config_keys.c) is 1e300 */
    /* integer keys' bounds as integers (1000000000000, not 1e+12) */
    const char *f = k->type == MT_CFG_FLOAT ? "%.15g" : "%.0f";
    char lo[40], hi[40];
    snprintf(lo, sizeof lo, f, k->min);
    snprintf(hi, sizeof hi, f, k->max);
    if (has_max)
        snprintf(buf, n, "%s%s, %s%s", k->min_exclusive ? "(" : "[", lo, hi,
                 k->max_exclusive ? ")" : "]");
    else
        snprintf(buf, n, "%s %s", k->min_exclusive ? ">" : ">=", lo);
}

/* "too large" for a value above the key's range (or beyond what the type
 * holds), "out of range" for one below it. */
static const char *range_word(const mt_cfg_key *k, double v) {
    return v > k->min ? "too large" : "out of range";
}

/* 1 = parsed; 0 = not an integer; -1 = an integer beyond 64 bits (*out is
 * then INT64_MAX or INT64_MIN, by its sign). */
static int parse_int(const char *s, int64_t *out) {
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (end == s || *end != '\0') return 0;
    *out = v;
    return errno == ERANGE ? -1 : 1;
}

/* Why a string value would not survive being written as "key = value" and
 * parsed again (the resolved config in run folders and checkpoints), or
 * NULL: a line break or other control character ends or breaks the line,
 * and ';' or '#' after white space starts a comment - at the start of the
 * value too, which is written after "key = " ("key =;x" in a file reads as
 * ";x", but "key = ;x" as nothing: fuzz_config found it). A value given
 * with --set may hold any of these; one read from an INI file only a
 * leading ';' or '#'. */
static const char *unstorable(const char *v) {
    for (const char *p = v; *p; p++) {
        if (iscntrl((unsigned char)*p)) return "holds a line break or another control character";
        if ((*p == ';' || *p == '#') && (p == v || isspace((unsigned char)p[-1])))
            return p == v ? "starts with ';' or '#' (a comment in INI text)"
                          : "holds ';' or '#' after a space (a comment in INI text)";
    }
    return NULL;
}

/* Parses text into the field of key k; where names the origin for messages. */
static int set_value(mt_config *c, const mt_cfg_key *k, const char *value, const char *where,
                     mt_err *e) {
    char range[96];
    range_text(k, range, sizeof range);
    switch (k->type) {
    case MT_CFG_INT: {
        int64_t v;
        int ok = parse_int(value, &v);
        if (ok == 0)
            return mt_err_set(e, MT_ERR_USAGE, "%s.%s = '%s' is not an integer (%s)", k->section,
                              k->key, value, where);
        if (ok < 0 || !in_range(k, (double)v))
            return mt_err_set(e, MT_ERR_USAGE, "%s.%s = %s is %s (must be %s) (%s)", k->section,
                              k->key, value, range_word(k, (double)v), range, where);
        *(int64_t *)field(c, k) = v;
        return MT_OK;
    }
    case MT_CFG_FLOAT: {
        char *end;
        errno = 0;
        double v = strtod(value, &end);
        int overflow = errno == ERANGE && fabs(v) == HUGE_VAL;
        if (end == value || *end != '\0' || (!overflow && !isfinite(v)))
            return mt_err_set(e, MT_ERR_USAGE, "%s.%s = '%s' is not a finite number (%s)",
                              k->section, k->key, value, where);
        if (errno == ERANGE && !overflow)
            return mt_err_set(e, MT_ERR_USAGE,
                              "%s.%s = %s is too close to zero for a double (must be %s) (%s)",
                              k->section, k->key, value, range, where);
        if (overflow || !in_range(k, v))
            return mt_err_set(e, MT_ERR_USAGE, "%s.%s = %s is %s (must be %s) (%s)", k->section,
                              k->key, value, range_word(k, v), range, where);
        *(double *)field(c, k) = v;
        return MT_OK;
    }
    case MT_CFG_BOOL: {
        static const char *yes[] = {"true", "yes", "on", "1"}, *no[] = {"false", "no", "off", "0"};
        for (int i = 0; i < 4; i++) {
            if (strcasecmp(value, yes[i]) == 0) return *(int *)field(c, k) = 1, MT_OK;
            if (strcasecmp(value, no[i]) == 0) return *(int *)field(c, k) = 0, MT_OK;
        }
        return mt_err_set(e, MT_ERR_USAGE, "%s.%s = '%s' is not a boolean (true/false) (%s)",
                          k->section, k->key, value, where);
    }
    case MT_CFG_STR: {
        if (strlen(value) >= MT_CFG_STR_LEN)
            return mt_err_set(e, MT_ERR_USAGE, "%s.%s is longer than %d characters (%s)",
                              k->section, k->key, MT_CFG_STR_LEN - 1, where);
        const char *why = unstorable(value);
        if (why) {
            mt_err_set(e, MT_ERR_USAGE,
                       "%s.%s = '%s' %s, so it would not read back from the config text stored "
                       "in run folders and checkpoints (%s)",
                       k->section, k->key, value, why, where);
            mt_err_hint(e, "rename the file or folder, or reach it through a symbolic link");
            return e->code;
        }
        strcpy((char *)field(c, k), value);
        return MT_OK;
    }
    case MT_CFG_ENUM: {
        const char *p = k->choices;
        size_t len = strlen(value);
        for (int idx = 0; *p; idx++) {
            const char *bar = strchr(p, '|');
            size_t n = bar ? (size_t)(bar - p) : strlen(p);
            if (n == len && strncmp(p, value, n) == 0) return *(int *)field(c, k) = idx, MT_OK;
            p += n + (bar ? 1 : 0);
        }
        return mt_err_set(e, MT_ERR_USAGE, "%s.%s = '%s' is not one of %s (%s)", k->section, k->key,
                          value, k->choices, where);
    }
    case MT_CFG_INTLIST: {
        mt_cfg_intlist l = {0};
        char buf[MT_CFG_STR_LEN];
        if (strlen(value) >= sizeof buf)
            return mt_err_set(e, MT_ERR_USAGE, "%s.%s is too long (%s)", k->section, k->key, where);
        strcpy(buf, value);
        char *save = NULL;
        for (char *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
            while (isspace((unsigned char)*tok)) tok++;
            char *end = tok + strlen(tok);
            while (end > tok && isspace((unsigned char)end[-1])) *--end = '\0';
            int64_t v = INT64_MAX;
            if (parse_int(tok, &v) == 0)
                return mt_err_set(e, MT_ERR_USAGE,
                                  "%s.%s = '%s': '%s' is not an integer (a comma-separated "
                                  "list of integers is expected) (%s)",
                                  k->section, k->key, value, tok, where);
            if (!in_range(k, (double)v))
                return mt_err_set(e, MT_ERR_USAGE, "%s.%s = '%s': %s is %s (each must be %s) (%s)",
                                  k->section, k->key, value, tok, range_word(k, (double)v), range,
                                  where);
            if (l.n == MT_CFG_LIST_MAX)
                return mt_err_set(e, MT_ERR_USAGE, "%s.%s has more than %d entries (%s)",
                                  k->section, k->key, MT_CFG_LIST_MAX, where);
            l.v[l.n++] = v;
        }
        if (l.n == 0)
            return mt_err_set(e, MT_ERR_USAGE, "%s.%s is empty (%s)", k->section, k->key, where);
        *(mt_cfg_intlist *)field(c, k) = l;
        return MT_OK;
    }
    }
    return mt_err_set(e, MT_ERR_INTERNAL, "bad key type for %s.%s", k->section, k->key);
}

void mt_config_defaults(mt_config *c) {
    memset(c, 0, sizeof *c);
    mt_err e = {0};
    for (const mt_cfg_key *k = mt_cfg_keys; k->section; k++) {
        if (set_value(c, k, k->def, "default", &e) != MT_OK) {
            mt_err_print(&e); /* a broken table is a bug, caught by every test */
            abort();
        }
    }
}

/* ---- INI parsing ---- */

typedef struct {
    mt_config *c;
    const char *origin;
    const char *text; /* remaining input */
    int line;         /* line number of the line last handed to inih */
    int long_line;    /* first line longer than inih accepts, or 0 */
    int err_line;     /* line of the error the handler or reader set, or 0 */
    unsigned char seen[NKEYS_MAX];
    mt_err *e;
} parse_state;

/* Feeds inih one line at a time so the handler knows the line number. */
static char *reader(char *str, int num, void *stream) {
    parse_state *s = stream;
    if (*s->text == '\0') return NULL;
    const char *nl = strchr(s->text, '\n');
    size_t len = nl ? (size_t)(nl - s->text) + 1 : strlen(s->text);
    s->line++;
    if (len > (size_t)num - 1) {
        if (!s->long_line) s->long_line = s->line;
        len = (size_t)num - 1; /* inih sees a cut line; we report it */
        memcpy(str, s->text, len);
        str[len] = '\0';
        s->text += nl ? (size_t)(nl - s->text) + 1 : strlen(s->text);
        return str;
    }
    memcpy(str, s->text, len);
    str[len] = '\0';
    s->text += len;
    /* inih reports keys, not headers: check a section name here, so an
     * unknown section is named at its own line even when it has no keys. */
    const char *p = str;
    while (isspace((unsigned char)*p)) p++;
    const char *close = *p == '[' ? strchr(p, ']') : NULL;
    if (close && !s->e->code) {
        char name[MT_CFG_STR_LEN];
        const char *a = p + 1, *b = close;
        while (a < b && isspace((unsigned char)*a)) a++;
        while (b > a && isspace((unsigned char)b[-1])) b--;
        snprintf(name, sizeof name, "%.*s", (int)(b - a), a);
        if (!section_exists(name)) {
            mt_err_set(s->e, MT_ERR_USAGE, "unknown section [%s] (%s line %d)", name, s->origin,
                       s->line);
            mt_err_hint(s->e, "'mpitrain train --help-config' lists every section and key");
            s->err_line = s->line;
        }
    }
    return str;
}

static int handler(void *user, const char *section, const char *name, const char *value) {
    parse_state *s = user;
    if (s->e->code) return 0;
    s->err_line = s->line; /* kept only if this call sets an error */
    char where[MT_CFG_STR_LEN + 32];
    snprintf(where, sizeof where, "%s line %d", s->origin, s->line);
    if (section[0] == '\0')
        return !mt_err_set(s->e, MT_ERR_USAGE, "key '%s' appears before any [section] (%s)", name,
                           where);
    /* Unknown sections were reported by the reader, at their header line. */
    const mt_cfg_key *k = find_key(section, name);
    if (!k) {
        mt_err_set(s->e, MT_ERR_USAGE, "unknown key '%s' in section [%s] (%s)", name, section,
                   where);
        suggest_key(section, name, s->e);
        return 0;
    }
    int idx = (int)(k - mt_cfg_keys);
    if (s->seen[idx])
        return !mt_err_set(s->e, MT_ERR_USAGE, "key %s.%s is given twice (%s)", section, name,
                           where);
    s->seen[idx] = 1;
    /* Allow "# comment" after a value as well as inih's "; comment". */
    char *v = strdup(value);
    if (!v) return !mt_err_set(s->e, MT_ERR_INTERNAL, "out of memory parsing %s", where);
    for (char *p = v; *p; p++)
        if (*p == '#' && p > v && isspace((unsigned char)p[-1])) {
            *p = '\0';
            break;
        }
    char *end = v + strlen(v);
    while (end > v && isspace((unsigned char)end[-1])) *--end = '\0';
    int ok = set_value(s->c, k, v, where, s->e) == MT_OK;
    free(v);
    return ok;
}

/* The buffer inih reads a line into (3 more than the longest line it takes). */
static int line_limit(void) {
#ifdef MT_INIH_RUNTIME_LIMITS
    return ini_max_line;
#else
    return INI_MAX_LINE;
#endif
}

/* inih reads a line into a buffer of ini_max_line bytes (Debian's libinih
 * makes its compile-time limits run-time settings): 200 by default, which
 * cuts any line over 197 characters. Size the buffer for the longest line
 * of this text instead, so values as long as a path always parse. */
static void fit_line_buffer(const char *text) {
    size_t longest = 0;
    for (const char *p = text; *p;) {
        const char *nl = strchr(p, '\n');
        size_t len = nl ? (size_t)(nl - p) : strlen(p);
        if (len > longest) longest = len;
        p += len + (nl ? 1 : 0);
    }
    size_t need = longest + 3; /* '\r', '\n' and the NUL */
    if (need < 200) need = 200;
    if (need > INT_MAX / 2) need = INT_MAX / 2; /* the reader reports what does not fit */
#ifdef MT_INIH_RUNTIME_LIMITS
    ini_use_stack = 0;
    ini_allow_realloc = 0;
    ini_max_line = ini_initial_alloc = (int)need;
#endif
}

int mt_config_parse(mt_config *c, const char *text, const char *origin, mt_err *e) {
    parse_state s = {.c = c, .origin = origin, .text = text, .e = e};
    if (nkeys() > NKEYS_MAX) return mt_err_set(e, MT_ERR_INTERNAL, "too many config keys");
    fit_line_buffer(text);
    int rc = ini_parse_stream(reader, &s, handler, &s);
    if (rc > 0 && e->code && rc < s.err_line) mt_err_clear(e); /* a syntax error came first */
    if (e->code) return e->code;
    if (s.long_line)
        return mt_err_set(e, MT_ERR_USAGE, "line is longer than %d characters (%s line %d)",
                          line_limit() - 3, origin, s.long_line);
    if (rc > 0)
        return mt_err_set(e, MT_ERR_USAGE,
                          "malformed line: expected 'key = value' or '[section]' (%s line %d)",
                          origin, rc);
    if (rc < 0) return mt_err_set(e, MT_ERR_INTERNAL, "INI parser failed (%s)", origin);
    return MT_OK;
}

/* Strips leading and trailing white space in place. */
static char *trim(char *s) {
    while (isspace((unsigned char)*s)) s++;
    char *end = s + strlen(s);
    while (end > s && isspace((unsigned char)end[-1])) *--end = '\0';
    return s;
}

int mt_config_set(mt_config *c, const char *assignment, mt_err *e) {
    char buf[MT_CFG_STR_LEN * 2];
    char where[MT_CFG_STR_LEN * 2 + 16];
    snprintf(where, sizeof where, "--set %s", assignment);
    if (strlen(assignment) >= sizeof buf)
        return mt_err_set(e, MT_ERR_USAGE, "override is too long (%.40s...)", assignment);
    strcpy(buf, assignment);
    char *eq = strchr(buf, '=');
    char *dot = strchr(buf, '.');
    if (!eq || !dot || dot > eq) {
        mt_err_set(e, MT_ERR_USAGE, "--set expects section.key=value, got '%s'", assignment);
        mt_err_hint(e, "for example --set optim.lr=0.01");
        return e->code;
    }
    *eq = '\0';
    *dot = '\0';
    char *section = trim(buf), *key = trim(dot + 1), *value = trim(eq + 1);
    if (!section_exists(section)) {
        mt_err_set(e, MT_ERR_USAGE, "unknown section [%s] (%s)", section, where);
        mt_err_hint(e, "'mpitrain train --help-config' lists every section and key");
        return e->code;
    }
    const mt_cfg_key *k = find_key(section, key);
    if (!k) {
        mt_err_set(e, MT_ERR_USAGE, "unknown key '%s' in section [%s] (%s)", key, section, where);
        suggest_key(section, key, e);
        return e->code;
    }
    return set_value(c, k, value, where, e);
}

int mt_config_time_limit(const mt_config *c, double *seconds) {
    const char *v = c->train.time_limit;
    *seconds = 0.0;
    if (strcmp(v, "auto") == 0) return 1;
    char *end;
    double x = strtod(v, &end);
    if (end == v || *end || !isfinite(x) || x < 0) return -1;
    if (x > MT_CFG_SECONDS_MAX) return -2;
    *seconds = x;
    return 0;
}

/* The largest number of samples (tokens, for a GPT) a run may step
 * through: positions in the data and counters stay far inside 64 bits. */
#define MT_POSITIONS_MAX 4611686018427387904.0 /* 2^62 */

int mt_config_validate(const mt_config *c, mt_err *e) {
    double limit;
    int tl = mt_config_time_limit(c, &limit);
    if (tl == -2)
        return mt_err_set(e, MT_ERR_USAGE,
                          "train.time_limit = %s is too large (must be at most %.0f seconds, or "
                          "auto)",
                          c->train.time_limit, MT_CFG_SECONDS_MAX);
    if (tl < 0)
        return mt_err_set(e, MT_ERR_USAGE,
                          "train.time_limit = '%s': give seconds (0 = off) or auto",
                          c->train.time_limit);
    int64_t per_sample = 1;
    if (c->model.kind == MT_MODEL_GPT)
        per_sample = c->train.seq_len > 0 ? c->train.seq_len : c->model.block_size;
    double positions = (double)c->train.steps * (double)c->train.global_batch * (double)per_sample;
    if (positions > MT_POSITIONS_MAX)
        return mt_err_set(e, MT_ERR_USAGE,
                          "train.steps = %lld with train.global_batch = %lld is too large: %.3g "
                          "%s in all, more than the 2^62 the data position holds",
                          (long long)c->train.steps, (long long)c->train.global_batch, positions,
                          per_sample > 1 ? "tokens" : "samples");
    if (c->model.layers.n < 2)
        return mt_err_set(e, MT_ERR_USAGE,
                          "model.layers needs at least 2 sizes (inputs and classes), got %d",
                          c->model.layers.n);
    if (c->model.layers.v[c->model.layers.n - 1] < 2)
        return mt_err_set(e, MT_ERR_USAGE, "model.layers: the last size (classes) must be >= 2");
    if (c->optim.min_lr > c->optim.lr)
        return mt_err_set(e, MT_ERR_USAGE, "optim.min_lr = %g is larger than optim.lr = %g",
                          c->optim.min_lr, c->optim.lr);
    const char *n = c->run.name;
    if (!n[0] || strcmp(n, ".") == 0 || strcmp(n, "..") == 0)
        return mt_err_set(e, MT_ERR_USAGE, "run.name = '%s' is not a usable folder name", n);
    for (const char *p = n; *p; p++)
        if (!isalnum((unsigned char)*p) && *p != '_' && *p != '-' && *p != '.')
            return mt_err_set(e, MT_ERR_USAGE,
                              "run.name = '%s' may only contain letters, digits, '_', '-', '.'", n);
    if (!c->run.dir[0]) return mt_err_set(e, MT_ERR_USAGE, "run.dir is empty");
    const char *m = c->registry.model_name;
    for (const char *p = m; *p; p++)
        if (!isalnum((unsigned char)*p) && *p != '_' && *p != '-' && *p != '.')
            return mt_err_set(e, MT_ERR_USAGE,
                              "registry.model_name = '%s' may only contain letters, digits, '_', "
                              "'-', '.'",
                              m);
    if (m[0] && (strcmp(m, ".") == 0 || strcmp(m, "..") == 0))
        return mt_err_set(e, MT_ERR_USAGE, "registry.model_name = '%s' is not a usable name", m);
    /* the registry's lookups take names up to MT_REGISTRY_NAME_MAX */
    if (c->registry.enabled && strlen(m[0] ? m : n) > MT_REGISTRY_NAME_MAX) {
        mt_err_set(e, MT_ERR_USAGE,
                   "%s is %zu characters long; the registry names models in at "
                   "most %d",
                   m[0] ? "registry.model_name" : "run.name (the registry's model name)",
                   strlen(m[0] ? m : n), MT_REGISTRY_NAME_MAX);
        mt_err_hint(e, "set a shorter registry.model_name");
        return e->code;
    }
    if (!c->checkpoint.resume[0])
        return mt_err_set(e, MT_ERR_USAGE,
                          "checkpoint.resume is empty (none, auto, or a checkpoint file)");
    return MT_OK;
}

/* Shortest text that reads back as the same double. */
static void format_double(double v, char *buf, size_t n) {
    for (int prec = 6; prec <= 17; prec++) {
        snprintf(buf, n, "%.*g", prec, v);
        if (strtod(buf, NULL) == v) return;
    }
}

size_t mt_config_value(const mt_config *c, const mt_cfg_key *k, char *buf, size_t n) {
    const void *f = (const char *)c + k->offset;
    switch (k->type) {
    case MT_CFG_INT:
        return (size_t)snprintf(buf, n, "%lld", (long long)*(const int64_t *)f);
    case MT_CFG_FLOAT:
        format_double(*(const double *)f, buf, n);
        return strlen(buf);
    case MT_CFG_BOOL:
        return (size_t)snprintf(buf, n, "%s", *(const int *)f ? "true" : "false");
    case MT_CFG_STR:
        return (size_t)snprintf(buf, n, "%s", (const char *)f);
    case MT_CFG_ENUM:
        return (size_t)snprintf(buf, n, "%s",
                                mt_config_enum_name(k->section, k->key, *(const int *)f));
    case MT_CFG_INTLIST: {
        const mt_cfg_intlist *l = f;
        size_t len = 0;
        buf[0] = '\0';
        for (int i = 0; i < l->n && len < n; i++)
            len += (size_t)snprintf(buf + len, n - len, "%s%lld", i ? "," : "", (long long)l->v[i]);
        return len;
    }
    }
    return 0;
}

size_t mt_config_format(const mt_config *c, char *buf, size_t n) {
    size_t len = 0;
    const char *section = "";
    char v[MT_CFG_STR_LEN * 2];
    for (const mt_cfg_key *k = mt_cfg_keys; k->section; k++) {
        if (strcmp(section, k->section) != 0) {
            section = k->section;
            len += (size_t)snprintf(len < n ? buf + len : NULL, len < n ? n - len : 0, "%s[%s]\n",
                                    len ? "\n" : "", section);
        }
        mt_config_value(c, k, v, sizeof v);
        len += (size_t)snprintf(len < n ? buf + len : NULL, len < n ? n - len : 0, "%s = %s\n",
                                k->key, v);
    }
    return len;
}

int mt_config_text(const mt_config *c, char **text, mt_err *e) {
    size_t need = mt_config_format(c, NULL, 0) + 1;
    *text = malloc(need);
    if (!*text) return mt_err_set(e, MT_ERR_INTERNAL, "out of memory for the config text");
    mt_config_format(c, *text, need);
    /* the text must read back as c itself: key by key, the same value text */
    mt_config *back = malloc(sizeof *back);
    char *a = malloc(MT_CFG_STR_LEN * 2), *b = malloc(MT_CFG_STR_LEN * 2);
    mt_err pe = {0};
    if (!back || !a || !b) {
        mt_err_set(e, MT_ERR_INTERNAL, "out of memory for the config text");
    } else {
        mt_config_defaults(back);
        if (mt_config_parse(back, *text, "the resolved config", &pe))
            mt_err_set(e, MT_ERR_USAGE, "the resolved config does not read back: %s", pe.msg);
        for (const mt_cfg_key *k = mt_cfg_keys; !e->code && k->section; k++) {
            mt_config_value(c, k, a, MT_CFG_STR_LEN * 2);
            mt_config_value(back, k, b, MT_CFG_STR_LEN * 2);
            if (strcmp(a, b) != 0)
                mt_err_set(e, MT_ERR_USAGE,
                           "%s.%s = '%s' does not read back from the resolved config text (it "
                           "reads as '%s')",
                           k->section, k->key, a, b);
        }
    }
    free(back), free(a), free(b);
    if (e->code) free(*text), *text = NULL;
    return e->code;
}

const char *mt_config_enum_name(const char *section, const char *key, int value) {
    /* One stored name per key and value, so a returned name stays valid for
     * the life of the process (callers keep them in records). */
    static char names[NKEYS_MAX][ENUM_CHOICES_MAX][64];
    const mt_cfg_key *k = find_key(section, key);
    if (!k || k->type != MT_CFG_ENUM || value < 0 || value >= ENUM_CHOICES_MAX) return "?";
    const char *p = k->choices;
    for (int idx = 0; *p; idx++) {
        const char *bar = strchr(p, '|');
        size_t len = bar ? (size_t)(bar - p) : strlen(p);
        if (idx == value) {
            char *name = names[k - mt_cfg_keys][value];
            if (!name[0]) snprintf(name, 64, "%.*s", (int)len, p);
            return name;
        }
        p += len + (bar ? 1 : 0);
    }
    return "?";
}

static const char *type_name(const mt_cfg_key *k) {
    switch (k->type) {
    case MT_CFG_INT:
        return "int";
    case MT_CFG_FLOAT:
        return "float";
    case MT_CFG_BOOL:
        return "bool";
    case MT_CFG_STR:
        return "string";
    case MT_CFG_ENUM:
        return k->choices;
    case MT_CFG_INTLIST:
        return "int list";
    }
    return "?";
}

void mt_config_help(FILE *f, int markdown) {
    char range[96];
    if (markdown) {
        fprintf(f, "| key | type | default | range | meaning |\n");
        fprintf(f, "| --- | --- | --- | --- | --- |\n");
    }
    const char *section = "";
    for (const mt_cfg_key *k = mt_cfg_keys; k->section; k++) {
        range[0] = '\0';
        if (k->type == MT_CFG_INT || k->type == MT_CFG_FLOAT || k->type == MT_CFG_INTLIST)
            range_text(k, range, sizeof range);
        if (markdown) {
            char type[128];
            snprintf(type, sizeof type, "%s", type_name(k));
            for (char *p = type; *p; p++)
                if (*p == '|') *p = '/';
            fprintf(f, "| `%s.%s` | %s | `%s` | %s | %s |\n", k->section, k->key, type,
                    k->def[0] ? k->def : "\"\"", range[0] ? range : "", k->help);
        } else {
            if (strcmp(section, k->section) != 0) {
                section = k->section;
                fprintf(f, "%s[%s]\n", section == mt_cfg_keys[0].section ? "" : "\n", section);
            }
            fprintf(f, "  %-14s %-14s default %-18s %s%s%s%s\n", k->key, type_name(k), k->def,
                    k->help, range[0] ? " (" : "", range, range[0] ? ")" : "");
        }
    }
}
