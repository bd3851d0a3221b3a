/*
 * fuzz_registry.c - libFuzzer target: the registry's line reader
 * (io/registry.c): mt_registry_read over a file of any bytes, then
 * mt_registry_append of a CHECKPOINT record of model "m", which looks up
 * the newest version of "m" in the same lines from the end.
 *
 * Properties: reading never fails on content (only a missing file fails);
 * every record it returns is an object with eventType, eventTime and
 * run.runId, on increasing lines; the appended record gets 1 + the version of
 * the last readable CHECKPOINT record of "m" with a version >= 1, and reads
 * back as the last record of the file.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"
#include "io/registry.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static FILE *devnull;

static void fail(const char *what) {
    fprintf(stderr, "fuzz: %s\n", what);
    abort();
}

/* The version the next CHECKPOINT of "m" should get, from the records read. */
static int64_t expected_version(const mt_registry *r) {
    for (int i = r->n - 1; i >= 0; i--) {
        const char *t = mt_registry_str(r->rec[i], "eventType");
        const char *m = mt_registry_str(r->rec[i], "model.name");
        double v = mt_registry_num(r->rec[i], "model.version", 0);
        /* (not mt_registry_version: the rule is checked, not reused) */
        if (strcmp(t, "CHECKPOINT") == 0 && m && strcmp(m, "m") == 0 && v >= 1 &&
            v <= 9007199254740991.0)
            return (int64_t)v + 1;
    }
    return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!devnull) devnull = fopen("/dev/null", "w");
    const char *path = fz_tmp("registry");
    fz_write_file(path, data, size);
    mt_registry r;
    mt_err e = {0};
    if (mt_registry_read(path, &r, devnull, &e)) {
        fz_check_err(&e, "mt_registry_read");
        fail("reading an existing registry file failed");
    }
    for (int i = 0; i < r.n; i++) {
        if (!mt_registry_str(r.rec[i], "eventType") || !mt_registry_str(r.rec[i], "eventTime") ||
            !mt_registry_str(r.rec[i], "run.runId"))
            fail("a record without eventType, eventTime or run.runId was returned");
        if (i > 0 && r.line[i] <= r.line[i - 1]) fail("record lines do not increase");
    }
    int64_t want = expected_version(&r);
    mt_registry_free(&r);

    cJSON *rec = cJSON_Parse("{\"eventType\":\"CHECKPOINT\",\"eventTime\":\"t\","
                             "\"run\":{\"runId\":\"fuzz\"},\"model\":{\"name\":\"m\"}}");
    int64_t version = 0;
    if (mt_registry_append(path, rec, &version, &e)) fail(e.msg);
    cJSON_Delete(rec);
    if (version != want) {
        fprintf(stderr, "fuzz: appended version %lld, expected %lld\n", (long long)version,
                (long long)want);
        abort();
    }
    if (mt_registry_read(path, &r, devnull, &e)) fail(e.msg);
    const char *run = r.n ? mt_registry_str(r.rec[r.n - 1], "run.runId") : NULL;
    if (!run || strcmp(run, "fuzz") != 0 ||
        mt_registry_num(r.rec[r.n - 1], "model.version", 0) != (double)version)
        fail("the appended record does not read back as the last one");
    mt_registry_free(&r);
    remove(path);
    return 0;
}
