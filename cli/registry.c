/*
 * registry.c - `mpitrain registry ...`: the model versions of a registry
 * file (io/registry.h), their aliases, lineage and artifacts. No MPI.
 *
 * A model version is a CHECKPOINT record. Aliases are ALIAS records replayed
 * in file order (set moves an alias, rm removes it); nothing is ever
 * rewritten.
 */
#include "cli/registry.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/error.h"
#include "core/config.h"
#include "core/lineage.h"
#include "core/version.h"
#include "io/registry.h"
#include "io/rundir.h"
#include "io/sha256.h"

#define DEFAULT_REGISTRY "runs/registry.jsonl"
#define MAX_ALIASES      64

static void usage(FILE *out) {
    fprintf(out,
            "usage: mpitrain registry [--registry FILE] COMMAND\n"
            "\n"
            "  list                          models and their versions, one line each\n"
            "  show NAME[:VERSION|@ALIAS] [--json]\n"
            "                                every field of one version (default: the newest)\n"
            "  lineage NAME[:VERSION|@ALIAS] the chain of checkpoints it was resumed from, back\n"
            "                                to the first run, with data and code at each link\n"
            "  verify [NAME[:VERSION]]       recomputes each version's artifact SHA-256: OK,\n"
            "                                MISSING or MODIFIED (DELETED: removed by\n"
            "                                checkpoint retention, recorded, not a failure)\n"
            "  alias set NAME ALIAS [VERSION] points ALIAS (e.g. production) at VERSION\n"
            "                                (default: the newest), recorded as an event\n"
            "  alias rm NAME ALIAS           removes ALIAS, recorded as an event\n"
            "  export --openlineage          one OpenLineage RunEvent per line on stdout\n"
            "\n"
            "FILE: --registry, else $MPITRAIN_REGISTRY, else " DEFAULT_REGISTRY ".\n"
            "Unreadable lines are skipped with a warning naming the line.\n"
            "Exit status: 0 ok, 2 usage, 4 verify found a missing or modified artifact,\n"
            "7 registry missing, unwritable or without that model/version/alias.\n"
            "The record format is docs/REGISTRY.md.\n");
}

/* ---- the versions and aliases of a registry ---- */

typedef struct {
    const char *model, *alias;
    int64_t version;
} alias_t;

typedef struct {
    mt_registry r;
    int *ver; /* indices of CHECKPOINT records with a model name and version */
    int nver;
    alias_t alias[MAX_ALIASES * 16];
    int nalias;
    int *del; /* indices of DELETE records */
    int ndel;
} reg_view;

static void view_free(reg_view *v) {
    mt_registry_free(&v->r);
    free(v->ver);
    free(v->del);
}

static int load(const char *path, reg_view *v, mt_err *e) {
    memset(v, 0, sizeof *v);
    if (mt_registry_read(path, &v->r, stderr, e)) return e->code;
    v->ver = malloc(sizeof(int) * (size_t)(v->r.n + 1));
    v->del = malloc(sizeof(int) * (size_t)(v->r.n + 1));
    if (!v->ver || !v->del) return mt_err_set(e, MT_ERR_INTERNAL, "out of memory");
    for (int i = 0; i < v->r.n; i++) {
        const cJSON *rec = v->r.rec[i];
        const char *type = mt_registry_str(rec, "eventType");
        if (strcmp(type, "CHECKPOINT") == 0 && mt_registry_str(rec, "model.name") &&
            mt_registry_version(rec, "model.version") >= 1) {
            v->ver[v->nver++] = i;
        } else if (strcmp(type, "DELETE") == 0 && mt_registry_str(rec, "delete.source")) {
            v->del[v->ndel++] = i;
        } else if (strcmp(type, "ALIAS") == 0) {
            const char *act = mt_registry_str(rec, "alias.action");
            const char *m = mt_registry_str(rec, "alias.model");
            const char *a = mt_registry_str(rec, "alias.alias");
            if (!act || !m || !a) continue;
            int k = 0;
            while (k < v->nalias &&
                   !(strcmp(v->alias[k].model, m) == 0 && strcmp(v->alias[k].alias, a) == 0))
                k++;
            if (strcmp(act, "rm") == 0) {
                if (k < v->nalias) v->alias[k] = v->alias[--v->nalias];
            } else if (strcmp(act, "set") == 0 &&
                       (k < v->nalias || v->nalias < (int)(sizeof v->alias / sizeof v->alias[0]))) {
                v->alias[k].model = m;
                v->alias[k].alias = a;
                v->alias[k].version = mt_registry_version(rec, "alias.version");
                if (k == v->nalias) v->nalias++;
            }
        }
    }
    return MT_OK;
}

static const cJSON *find_version(const reg_view *v, const char *model, int64_t version) {
    const cJSON *found = NULL;
    for (int i = 0; i < v->nver; i++) {
        const cJSON *rec = v->r.rec[v->ver[i]];
        if (strcmp(mt_registry_str(rec, "model.name"), model) == 0 &&
            (version == 0 || mt_registry_version(rec, "model.version") == version))
            found = rec; /* version 0: the newest, last in the file */
    }
    return found;
}

/* The DELETE record of a version's artifact (same path, and same SHA-256
 * when the deletion knew it), or NULL. */
static const cJSON *deletion_of(const reg_view *v, const cJSON *rec) {
    const char *src = mt_registry_str(rec, "model.source"),
               *sha = mt_registry_str(rec, "model.sha256");
    for (int k = v->ndel - 1; src && k >= 0; k--) {
        const cJSON *d = v->r.rec[v->del[k]];
        const char *dsha = mt_registry_str(d, "delete.sha256");
        if (strcmp(mt_registry_str(d, "delete.source"), src) == 0 &&
            (!dsha || (sha && strcmp(dsha, sha) == 0)))
            return d;
    }
    return NULL;
}

static int64_t version_of(const cJSON *rec) {
    return mt_registry_version(rec, "model.version");
}

/* The aliases pointing at model:version, comma-separated, into buf. */
static const char *aliases_of(const reg_view *v, const char *model, int64_t version, char *buf,
                              size_t n) {
    buf[0] = '\0';
    size_t len = 0;
    for (int k = 0; k < v->nalias; k++)
        if (strcmp(v->alias[k].model, model) == 0 && v->alias[k].version == version && len < n)
            len += (size_t)snprintf(buf + len, n - len, "%s%s", len ? "," : "", v->alias[k].alias);
    return buf;
}

/* NAME, NAME:VERSION or NAME@ALIAS -> a version record. */
static const cJSON *resolve(const reg_view *v, const char *spec, mt_err *e) {
    char name[MT_CFG_STR_LEN + 64]; /* registry.model_name, ':' and a version or '@' and an alias */
    if (strlen(spec) >= sizeof name) {
        mt_err_set(e, MT_ERR_USAGE, "'%.80s...' is longer than any model name", spec);
        return NULL;
    }
    snprintf(name, sizeof name, "%s", spec);
    char *colon = strchr(name, ':'), *at = strchr(name, '@');
    int64_t version = 0;
    if (colon) {
        *colon = '\0';
        char *end;
        errno = 0;
        long long x = strtoll(colon + 1, &end, 10);
        if (colon[1] && !*end && errno == ERANGE && x > 0) {
            mt_err_set(e, MT_ERR_USAGE, "'%s': the version after ':' is too large", spec);
            return NULL;
        }
        if (!colon[1] || *end || errno || x < 1) {
            mt_err_set(e, MT_ERR_USAGE, "'%s': the version after ':' must be a number >= 1", spec);
            return NULL;
        }
        version = x;
    } else if (at) {
        *at = '\0';
        int k = 0;
        while (k < v->nalias &&
               !(strcmp(v->alias[k].model, name) == 0 && strcmp(v->alias[k].alias, at + 1) == 0))
            k++;
        if (k == v->nalias) {
            mt_err_set(e, MT_ERR_REGISTRY, "model %s has no alias '%s'", name, at + 1);
            return NULL;
        }
        version = v->alias[k].version;
        if (version < 1) { /* 0 would mean "the newest" to find_version */
            mt_err_set(e, MT_ERR_REGISTRY,
                       "alias '%s' of model %s points at no valid version (its ALIAS record's "
                       "alias.version is missing or not a whole number >= 1)",
                       at + 1, name);
            return NULL;
        }
    }
    if (!mt_registry_valid_name(name)) {
        mt_err_set(e, MT_ERR_USAGE, "'%s' is not a model name (letters, digits, _ - .)", name);
        return NULL;
    }
    const cJSON *rec = find_version(v, name, version);
    if (!rec) {
        if (!find_version(v, name, 0))
            mt_err_set(e, MT_ERR_REGISTRY, "the registry has no model '%s'", name);
        else
            mt_err_set(e, MT_ERR_REGISTRY, "model %s has no version %lld", name,
                       (long long)version);
    }
    return rec;
}

/* ---- list ---- */

static int cmp_ver(const void *a, const void *b, void *ctx) {
    const reg_view *v = ctx;
    const cJSON *x = v->r.rec[*(const int *)a], *y = v->r.rec[*(const int *)b];
    int c = strcmp(mt_registry_str(x, "model.name"), mt_registry_str(y, "model.name"));
    if (c) return c;
    int64_t p = version_of(x), q = version_of(y);
    return p < q ? -1 : p > q;
}

static int cmd_list(reg_view *v) {
    int *idx = malloc(sizeof(int) * (size_t)(v->nver + 1));
    if (!idx) return MT_ERR_INTERNAL;
    memcpy(idx, v->ver, sizeof(int) * (size_t)v->nver);
    qsort_r(idx, (size_t)v->nver, sizeof(int), cmp_ver, v);
    printf("%-20s %7s %9s %-24s %-8s %-16s %s\n", "MODEL", "VERSION", "STEP", "CREATED (UTC)",
           "RUN", "ALIASES", "ARTIFACT");
    for (int i = 0; i < v->nver; i++) {
        const cJSON *rec = v->r.rec[idx[i]];
        const char *name = mt_registry_str(rec, "model.name");
        char al[256];
        printf("%-20s %7lld %9.0f %-24s %-8.8s %-16s %s%s\n", name, (long long)version_of(rec),
               mt_registry_num(rec, "model.step", -1), mt_registry_str(rec, "eventTime"),
               mt_registry_str(rec, "run.runId"),
               aliases_of(v, name, version_of(rec), al, sizeof al)[0] ? al : "-",
               deletion_of(v, rec) ? "(deleted) " : "",
               mt_registry_str(rec, "model.source") ? mt_registry_str(rec, "model.source") : "?");
    }
    if (v->nver == 0) printf("(no model versions)\n");
    free(idx);
    return MT_OK;
}

/* ---- show ---- */

static const char *or_dash(const char *s) {
    return s && s[0] ? s : "-";
}

static void print_num(const char *label, const cJSON *rec, const char *path) {
    const cJSON *o = rec;
    char key[64];
    const char *p = path;
    while (o && *p) {
        size_t n = strcspn(p, ".");
        snprintf(key, sizeof key, "%.*s", (int)n, p);
        o = cJSON_GetObjectItemCaseSensitive(o, key);
        p += n + (p[n] == '.');
    }
    if (cJSON_IsNumber(o))
        printf("  %-16s %.6g\n", label, o->valuedouble);
    else
        printf("  %-16s -\n", label);
}

static void show_human(const reg_view *v, const cJSON *rec) {
    const char *name = mt_registry_str(rec, "model.name");
    int64_t ver = version_of(rec);
    char al[256];
    printf("model %s version %lld\n", name, (long long)ver);
    printf("  %-16s %s\n", "aliases", or_dash(aliases_of(v, name, ver, al, sizeof al)));
    printf("  %-16s %s\n", "created", mt_registry_str(rec, "eventTime"));
    printf("  %-16s %s\n", "source", or_dash(mt_registry_str(rec, "model.source")));
    const cJSON *gone = deletion_of(v, rec);
    if (gone)
        printf("  %-16s %s (%s)\n", "deleted", mt_registry_str(gone, "eventTime"),
               or_dash(mt_registry_str(gone, "delete.reason")));
    printf("  %-16s %s\n", "sha256", or_dash(mt_registry_str(rec, "model.sha256")));
    print_num("size (bytes)", rec, "model.size_bytes");
    print_num("step", rec, "model.step");
    printf("  %-16s %s\n", "run", mt_registry_str(rec, "run.runId"));
    printf("  %-16s %s\n", "run folder", or_dash(mt_registry_str(rec, "run.dir")));
    if (mt_registry_str(rec, "run.dir")) /* its metrics.jsonl, as a picture */
        printf("  %-16s mpitrain plot '%s' --out FILE.png\n", "plot",
               mt_registry_str(rec, "run.dir")); /* (quoted: a folder with spaces) */
    printf("metrics\n");
    static const char *metrics[] = {"loss", "train_accuracy", "grad_norm",
                                    "lr",   "test_loss",      "test_accuracy"};
    for (size_t i = 0; i < sizeof metrics / sizeof metrics[0]; i++) {
        char p[64];
        snprintf(p, sizeof p, "metrics.%s", metrics[i]);
        print_num(metrics[i], rec, p);
    }
    printf("data\n");
    const cJSON *in;
    cJSON_ArrayForEach(in, cJSON_GetObjectItemCaseSensitive(rec, "inputs")) {
        printf("  %-16s %s\n", "uri", or_dash(mt_registry_str(in, "name")));
        printf("  %-16s %s\n", "sha256", or_dash(mt_registry_str(in, "version")));
        const cJSON *sp;
        cJSON_ArrayForEach(sp, cJSON_GetObjectItemCaseSensitive(in, "splits")) {
            char label[64];
            snprintf(label, sizeof label, "%s %s", sp->string,
                     or_dash(mt_registry_str(sp, "unit")));
            print_num(label, sp, "samples");
        }
    }
    const cJSON *lin = cJSON_GetObjectItemCaseSensitive(rec, "lineage");
    printf("code\n");
    printf("  %-16s %s\n", "commit", or_dash(mt_registry_str(lin, "code.commit")));
    printf("  %-16s %s\n", "branch", or_dash(mt_registry_str(lin, "code.branch")));
    const cJSON *dirty =
        cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(lin, "code"), "dirty");
    printf("  %-16s %s\n", "dirty", cJSON_IsTrue(dirty) ? "yes" : "no");
    printf("  %-16s %s\n", "mpitrain", or_dash(mt_registry_str(lin, "code.mpitrain_version")));
    printf("framework\n");
    printf("  %-16s %s\n", "model kind", or_dash(mt_registry_str(lin, "framework.model_kind")));
    printf("  %-16s %s\n", "optimizer", or_dash(mt_registry_str(lin, "framework.optimizer")));
    printf("environment\n");
    printf("  %-16s %s\n", "container", or_dash(mt_registry_str(lin, "environment.container")));
    printf("  %-16s", "hosts");
    const cJSON *h;
    cJSON_ArrayForEach(h, cJSON_GetObjectItemCaseSensitive(
                              cJSON_GetObjectItemCaseSensitive(lin, "environment"), "hosts")) {
        if (cJSON_IsString(h)) printf(" %s", h->valuestring);
    }
    printf("\nlibraries\n");
    const cJSON *lib;
    cJSON_ArrayForEach(lib, cJSON_GetObjectItemCaseSensitive(lin, "libraries")) {
        printf("  %-16s %s\n", lib->string, cJSON_IsString(lib) ? lib->valuestring : "-");
    }
    printf("layout\n");
    print_num("world", lin, "layout.world");
    print_num("dp", lin, "layout.dp");
    print_num("tp", lin, "layout.tp");
    print_num("pp", lin, "layout.pp");
    print_num("threads per rank", lin, "layout.threads_per_rank");
    printf("scheduler\n");
    printf("  %-16s %s\n", "name", or_dash(mt_registry_str(lin, "scheduler.name")));
    printf("  %-16s %s\n", "job id", or_dash(mt_registry_str(lin, "scheduler.job_id")));
    print_num("restart count", lin, "scheduler.restart_count");
    printf("  %-16s %s\n", "array task", or_dash(mt_registry_str(lin, "scheduler.array_task_id")));
    printf("parent\n");
    if (mt_registry_str(lin, "parent.checkpoint")) {
        printf("  %-16s %s\n", "checkpoint", mt_registry_str(lin, "parent.checkpoint"));
        printf("  %-16s %s\n", "sha256", or_dash(mt_registry_str(lin, "parent.checkpoint_sha256")));
        printf("  %-16s %s\n", "run", or_dash(mt_registry_str(lin, "parent.run_id")));
        print_num("step", lin, "parent.step");
    } else {
        printf("  -  (a fresh run)\n");
    }
    printf("hyperparameters (config sha256 %s)\n",
           or_dash(mt_registry_str(lin, "hyperparameters.config_sha256")));
    const cJSON *val;
    cJSON_ArrayForEach(val,
                       cJSON_GetObjectItemCaseSensitive(
                           cJSON_GetObjectItemCaseSensitive(lin, "hyperparameters"), "values")) {
        printf("  %-28s %s\n", val->string, cJSON_IsString(val) ? val->valuestring : "?");
    }
}

static int cmd_show(reg_view *v, const char *spec, int json, mt_err *e) {
    const cJSON *rec = resolve(v, spec, e);
    if (!rec) return e->code;
    if (json) {
        cJSON *copy = cJSON_Duplicate(rec, 1);
        cJSON *model = cJSON_GetObjectItemCaseSensitive(copy, "model");
        cJSON *arr = cJSON_CreateArray();
        const char *name = mt_registry_str(rec, "model.name");
        for (int k = 0; k < v->nalias; k++)
            if (strcmp(v->alias[k].model, name) == 0 && v->alias[k].version == version_of(rec))
                cJSON_AddItemToArray(arr, cJSON_CreateString(v->alias[k].alias));
        cJSON_ReplaceItemInObjectCaseSensitive(model, "aliases", arr);
        char *s = cJSON_Print(copy);
        printf("%s\n", s);
        free(s);
        cJSON_Delete(copy);
    } else {
        show_human(v, rec);
    }
    return MT_OK;
}

/* ---- lineage ---- */

static const cJSON *by_artifact(const reg_view *v, const char *sha) {
    for (int i = 0; sha && i < v->nver; i++) {
        const char *s = mt_registry_str(v->r.rec[v->ver[i]], "model.sha256");
        if (s && strcmp(s, sha) == 0) return v->r.rec[v->ver[i]];
    }
    return NULL;
}

static int cmd_lineage(reg_view *v, const char *spec, mt_err *e) {
    const cJSON *rec = resolve(v, spec, e);
    for (int depth = 0; rec; depth++) {
        const cJSON *lin = cJSON_GetObjectItemCaseSensitive(rec, "lineage");
        const cJSON *dirty = cJSON_GetObjectItemCaseSensitive(
            cJSON_GetObjectItemCaseSensitive(lin, "code"), "dirty");
        const cJSON *in = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(rec, "inputs"), 0);
        printf("%s%s:%lld  step %.0f  run %s  %s\n", depth ? "  resumed from\n" : "",
               mt_registry_str(rec, "model.name"), (long long)version_of(rec),
               mt_registry_num(rec, "model.step", -1), mt_registry_str(rec, "run.runId"),
               or_dash(mt_registry_str(rec, "eventTime")));
        printf("    artifact %s (sha256 %.16s...)\n", or_dash(mt_registry_str(rec, "model.source")),
               or_dash(mt_registry_str(rec, "model.sha256")));
        printf("    data     %s (sha256 %.16s...)\n", or_dash(mt_registry_str(in, "name")),
               or_dash(mt_registry_str(in, "version")));
        printf("    code     mpitrain %s, commit %.12s (%s%s)\n",
               or_dash(mt_registry_str(lin, "code.mpitrain_version")),
               or_dash(mt_registry_str(lin, "code.commit")),
               or_dash(mt_registry_str(lin, "code.branch")), cJSON_IsTrue(dirty) ? ", dirty" : "");
        printf("    config   sha256 %.16s...\n",
               or_dash(mt_registry_str(lin, "hyperparameters.config_sha256")));
        const char *parent = mt_registry_str(lin, "parent.checkpoint");
        if (!parent) {
            printf("  (first run: started from scratch)\n");
            break;
        }
        const cJSON *up = by_artifact(v, mt_registry_str(lin, "parent.checkpoint_sha256"));
        if (!up || depth > v->nver) {
            printf("  resumed from %s (sha256 %.16s..., run %s), which is not a version in this "
                   "registry\n",
                   parent, or_dash(mt_registry_str(lin, "parent.checkpoint_sha256")),
                   or_dash(mt_registry_str(lin, "parent.run_id")));
            break;
        }
        rec = up;
    }
    return e->code;
}

/* ---- verify ---- */

static int cmd_verify(reg_view *v, const char *spec, mt_err *e) {
    const cJSON *only = NULL;
    char name[MT_CFG_STR_LEN] = ""; /* registry.model_name */
    if (spec) {
        if (strchr(spec, ':') || strchr(spec, '@')) {
            if (!(only = resolve(v, spec, e))) return e->code;
        } else {
            snprintf(name, sizeof name, "%s", spec);
            if (!find_version(v, name, 0))
                return mt_err_set(e, MT_ERR_REGISTRY, "the registry has no model '%s'", name);
        }
    }
    int bad = 0, n = 0, ndeleted = 0;
    for (int i = 0; i < v->nver; i++) {
        const cJSON *rec = v->r.rec[v->ver[i]];
        if ((only && rec != only) || (name[0] && strcmp(mt_registry_str(rec, "model.name"), name)))
            continue;
        const char *src = mt_registry_str(rec, "model.source");
        const char *want = mt_registry_str(rec, "model.sha256");
        const char *status = "OK";
        char got[72] = "";
        mt_err fe = {0};
        struct stat st;
        const cJSON *gone = deletion_of(v, rec);
        if (gone && (!src || stat(src, &st) != 0)) {
            status = "DELETED";
            ndeleted++;
        } else if (!src || stat(src, &st) != 0) {
            status = "MISSING";
        } else if (mt_sha256_file(src, got, &fe)) {
            status = "UNREADABLE";
        } else if (!want || strcmp(got, want) != 0) {
            status = "MODIFIED";
        }
        bad += strcmp(status, "OK") != 0 && strcmp(status, "DELETED") != 0;
        n++;
        printf("%-8s %s:%lld  %s\n", status, mt_registry_str(rec, "model.name"),
               (long long)version_of(rec), src ? src : "?");
    }
    printf("verify: %d version(s), %d OK, %d deleted on purpose, %d failing\n", n,
           n - bad - ndeleted, ndeleted, bad);
    if (bad)
        mt_err_set(e, MT_ERR_CKPT, "%d of %d model version(s) have a missing or modified artifact",
                   bad, n);
    return e->code;
}

/* ---- alias ---- */

static int cmd_alias(const char *path, reg_view *v, int argc, char **argv, mt_err *e) {
    if (argc < 3 || (strcmp(argv[0], "set") != 0 && strcmp(argv[0], "rm") != 0) ||
        (strcmp(argv[0], "set") == 0 && argc > 4) || (strcmp(argv[0], "rm") == 0 && argc != 3))
        return mt_err_set(e, MT_ERR_USAGE,
                          "usage: registry alias set NAME ALIAS [VERSION] | alias rm NAME ALIAS");
    int set = strcmp(argv[0], "set") == 0;
    const char *model = argv[1], *alias = argv[2];
    if (!mt_registry_valid_name(alias) || strspn(alias, "0123456789") == strlen(alias))
        return mt_err_set(e, MT_ERR_USAGE,
                          "alias '%s': letters, digits, _ - . and not a plain number", alias);
    int64_t version = 0;
    if (set) {
        char spec[200];
        snprintf(spec, sizeof spec, argc == 4 ? "%s:%s" : "%s", model, argc == 4 ? argv[3] : "");
        const cJSON *rec = resolve(v, spec, e);
        if (!rec) return e->code;
        version = version_of(rec);
    } else {
        char spec[200];
        snprintf(spec, sizeof spec, "%s@%s", model, alias);
        if (!resolve(v, spec, e)) return e->code;
    }
    mt_version_info vi;
    mt_version_get(&vi);
    char now[32], id[37], producer[64], host[256] = "";
    mt_lineage_now(now);
    mt_uuid4(id);
    snprintf(producer, sizeof producer, "mpitrain %s", vi.version);
    gethostname(host, sizeof host - 1);
    cJSON *ev = cJSON_CreateObject();
    cJSON_AddStringToObject(ev, "schema", MT_REGISTRY_SCHEMA);
    cJSON_AddStringToObject(ev, "eventType", "ALIAS");
    cJSON_AddStringToObject(ev, "eventTime", now);
    cJSON_AddStringToObject(ev, "producer", producer);
    cJSON *run = cJSON_AddObjectToObject(ev, "run");
    cJSON_AddStringToObject(run, "runId", id);
    cJSON *job = cJSON_AddObjectToObject(ev, "job");
    cJSON_AddStringToObject(job, "namespace", "mpitrain");
    cJSON_AddStringToObject(job, "name", "registry-alias");
    cJSON *a = cJSON_AddObjectToObject(ev, "alias");
    cJSON_AddStringToObject(a, "action", set ? "set" : "rm");
    cJSON_AddStringToObject(a, "model", model);
    cJSON_AddStringToObject(a, "alias", alias);
    if (set)
        cJSON_AddNumberToObject(a, "version", (double)version);
    else
        cJSON_AddNullToObject(a, "version");
    const char *user = getenv("USER");
    cJSON_AddStringToObject(a, "user", user ? user : "");
    cJSON_AddStringToObject(a, "host", host);
    int64_t ignored;
    if (!mt_registry_append(path, ev, &ignored, e)) {
        if (set)
            printf("alias %s of %s -> version %lld\n", alias, model, (long long)version);
        else
            printf("alias %s of %s removed\n", alias, model);
    }
    cJSON_Delete(ev);
    return e->code;
}

/* ---- export ---- */

#define OL_VERSION_FACET                                                                           \
    "https://openlineage.io/spec/facets/1-0-0/DatasetVersionDatasetFacet.json#/$defs/"             \
    "DatasetVersionDatasetFacet"

/* An OpenLineage facet: a copy of from (or an empty object) with the base
 * facet fields. mpitrain's own facets point at its registry schema. */
static cJSON *facet(cJSON *parent, const char *name, const cJSON *from, const char *schema) {
    cJSON *f = from ? cJSON_Duplicate(from, 1) : cJSON_CreateObject();
    if (!cJSON_IsObject(f)) {
        cJSON *w = cJSON_CreateObject();
        cJSON_AddItemToObject(w, "value", f);
        f = w;
    }
    char url[256];
    if (!schema) {
        snprintf(url, sizeof url, "urn:mpitrain:registry-schema-1#/properties/%s",
                 strncmp(name, "mpitrain_", 9) == 0 ? name + 9 : name);
        schema = url;
    }
    cJSON_AddStringToObject(f, "_producer", "urn:mpitrain:registry");
    cJSON_AddStringToObject(f, "_schemaURL", schema);
    cJSON_AddItemToObject(parent, name, f);
    return f;
}

static cJSON *ol_datasets(const cJSON *list) {
    cJSON *out = cJSON_CreateArray();
    const cJSON *d;
    cJSON_ArrayForEach(d, list) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "namespace", or_dash(mt_registry_str(d, "namespace")));
        cJSON_AddStringToObject(o, "name", or_dash(mt_registry_str(d, "name")));
        cJSON *facets = cJSON_AddObjectToObject(o, "facets");
        cJSON *ver = facet(facets, "version", NULL, OL_VERSION_FACET);
        cJSON_AddStringToObject(ver, "datasetVersion", or_dash(mt_registry_str(d, "version")));
        facet(facets, "mpitrain_file", d, NULL);
        cJSON_AddItemToArray(out, o);
    }
    return out;
}

static int cmd_export(reg_view *v) {
    int skipped = 0;
    for (int i = 0; i < v->r.n; i++) {
        const cJSON *rec = v->r.rec[i];
        const char *type = mt_registry_str(rec, "eventType");
        const char *ol = strcmp(type, "CHECKPOINT") == 0 ? "RUNNING" : type;
        if (strcmp(ol, "START") && strcmp(ol, "RUNNING") && strcmp(ol, "COMPLETE") &&
            strcmp(ol, "FAIL") && strcmp(ol, "ABORT")) {
            skipped++;
            continue;
        }
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "eventType", ol);
        cJSON_AddStringToObject(o, "eventTime", mt_registry_str(rec, "eventTime"));
        char producer[96];
        snprintf(
            producer, sizeof producer, "urn:mpitrain:%s",
            or_dash(mt_registry_str(rec, "producer")) +
                (strncmp(or_dash(mt_registry_str(rec, "producer")), "mpitrain ", 9) == 0 ? 9 : 0));
        cJSON_AddStringToObject(o, "producer", producer);
        cJSON_AddStringToObject(
            o, "schemaURL", "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent");
        cJSON *run = cJSON_AddObjectToObject(o, "run");
        cJSON_AddStringToObject(run, "runId", mt_registry_str(rec, "run.runId"));
        cJSON *rf = cJSON_AddObjectToObject(run, "facets");
        facet(rf, "mpitrain_lineage", cJSON_GetObjectItemCaseSensitive(rec, "lineage"), NULL);
        if (cJSON_GetObjectItemCaseSensitive(rec, "model"))
            facet(rf, "mpitrain_model_version", cJSON_GetObjectItemCaseSensitive(rec, "model"),
                  NULL);
        if (cJSON_GetObjectItemCaseSensitive(rec, "metrics"))
            facet(rf, "mpitrain_metrics", cJSON_GetObjectItemCaseSensitive(rec, "metrics"), NULL);
        if (cJSON_GetObjectItemCaseSensitive(rec, "result"))
            facet(rf, "mpitrain_result", cJSON_GetObjectItemCaseSensitive(rec, "result"), NULL);
        cJSON *job = cJSON_AddObjectToObject(o, "job");
        cJSON_AddStringToObject(job, "namespace", or_dash(mt_registry_str(rec, "job.namespace")));
        cJSON_AddStringToObject(job, "name", or_dash(mt_registry_str(rec, "job.name")));
        cJSON_AddItemToObject(o, "inputs",
                              ol_datasets(cJSON_GetObjectItemCaseSensitive(rec, "inputs")));
        cJSON_AddItemToObject(o, "outputs",
                              ol_datasets(cJSON_GetObjectItemCaseSensitive(rec, "outputs")));
        char *s = cJSON_PrintUnformatted(o);
        printf("%s\n", s);
        free(s);
        cJSON_Delete(o);
    }
    if (skipped)
        fprintf(stderr, "note: %d alias and delete event(s) left out (not run events)\n", skipped);
    return MT_OK;
}

/* ---- entry ---- */

int mt_cli_registry(int argc, char **argv) {
    const char *path = getenv("MPITRAIN_REGISTRY");
    if (!path || !path[0]) path = DEFAULT_REGISTRY;
    char *args[64];
    int n = 0, json = 0, openlineage = 0;
    mt_err e = {0};
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--registry") == 0) {
            if (i + 1 >= argc) {
                mt_err_set(&e, MT_ERR_USAGE, "--registry needs a FILE");
                break;
            }
            path = argv[++i];
        } else if (strcmp(argv[i], "--json") == 0) {
            json = 1;
        } else if (strcmp(argv[i], "--openlineage") == 0) {
            openlineage = 1;
        } else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            usage(stdout);
            return 0;
        } else if (argv[i][0] == '-' && argv[i][1]) {
            mt_err_set(&e, MT_ERR_USAGE, "unknown option %s", argv[i]);
        } else if (n < 64) {
            args[n++] = argv[i];
        }
    }
    const char *cmd = n ? args[0] : "";
    int want = strcmp(cmd, "list") == 0 || strcmp(cmd, "export") == 0    ? 1
               : strcmp(cmd, "show") == 0 || strcmp(cmd, "lineage") == 0 ? 2
               : strcmp(cmd, "verify") == 0                              ? -1
               : strcmp(cmd, "alias") == 0                               ? -2
                                                                         : 0;
    if (!e.code &&
        (want == 0 || (want > 0 && n != want) || (want == -1 && n > 2) ||
         (json && strcmp(cmd, "show") != 0) || (strcmp(cmd, "export") == 0) != openlineage))
        mt_err_set(&e, MT_ERR_USAGE,
                   n ? "bad arguments for 'registry %s'" : "a command is needed%s", cmd);
    if (e.code) {
        mt_err_print(&e);
        usage(stderr);
        return e.code;
    }
    reg_view v;
    if (!load(path, &v, &e)) {
        if (strcmp(cmd, "list") == 0)
            cmd_list(&v);
        else if (strcmp(cmd, "show") == 0)
            cmd_show(&v, args[1], json, &e);
        else if (strcmp(cmd, "lineage") == 0)
            cmd_lineage(&v, args[1], &e);
        else if (strcmp(cmd, "verify") == 0)
            cmd_verify(&v, n > 1 ? args[1] : NULL, &e);
        else if (strcmp(cmd, "alias") == 0)
            cmd_alias(path, &v, n - 1, args + 1, &e);
        else
            cmd_export(&v);
    }
    view_free(&v);
    if (e.code) mt_err_print(&e);
    return e.code;
}
