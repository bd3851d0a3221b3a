/*
 * test_registry.c - the registry file: version numbers, torn and garbage
 * lines, and 16 processes appending 200 records each at once.
 */
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "io/registry.h"
#include "test_util.h"

#define WRITERS 16
#define EACH    200

static cJSON *record(const char *type, const char *model, int writer, int i) {
    cJSON *r = cJSON_CreateObject();
    cJSON_AddStringToObject(r, "eventType", type);
    cJSON_AddStringToObject(r, "eventTime", "2026-11-27T00:00:00.000Z");
    cJSON *run = cJSON_AddObjectToObject(r, "run");
    cJSON_AddStringToObject(run, "runId", "00000000-0000-4000-8000-000000000000");
    if (model) {
        cJSON *m = cJSON_AddObjectToObject(r, "model");
        cJSON_AddStringToObject(m, "name", model);
        cJSON_AddNumberToObject(m, "writer", writer);
        cJSON_AddNumberToObject(m, "i", i);
    }
    return r;
}

static int64_t append(const char *path, const char *type, const char *model) {
    cJSON *r = record(type, model, -1, -1);
    mt_err e = {0};
    int64_t v = -1;
    if (mt_registry_append(path, r, &v, &e)) printf("append failed: %s\n", e.msg);
    cJSON_Delete(r);
    return v;
}

static void append_raw(const char *path, const char *text) {
    FILE *f = fopen(path, "a");
    fputs(text, f);
    fclose(f);
}

static void test_versions(const char *dir) {
    char path[512];
    snprintf(path, sizeof path, "%s/sub/registry.jsonl", dir);
    CHECK(append(path, "START", NULL) == 0, "a START gets no version");
    CHECK(append(path, "CHECKPOINT", "a") == 1, "first version of a is 1");
    CHECK(append(path, "CHECKPOINT", "a") == 2, "second version of a is 2");
    CHECK(append(path, "CHECKPOINT", "b") == 1, "first version of b is 1");
    /* garbage in the middle, then a torn last line without its newline */
    append_raw(path, "this is not json\n");
    append_raw(path, "{\"eventType\":\"CHECKPOINT\",\"model\":{\"name\":\"a\",\"vers");
    CHECK(append(path, "CHECKPOINT", "a") == 3, "after a torn line, a's next version is 3");
    CHECK(append(path, "COMPLETE", NULL) == 0, "a COMPLETE gets no version");
    mt_registry r;
    mt_err e = {0};
    FILE *warn = tmpfile();
    CHECK(mt_registry_read(path, &r, warn, &e) == 0, "read: %s", e.msg);
    CHECK(r.n == 6, "6 records readable, got %d", r.n);
    CHECK(r.skipped == 2, "2 lines skipped, got %d", r.skipped);
    char text[2048] = "";
    rewind(warn);
    size_t n = fread(text, 1, sizeof text - 1, warn);
    text[n] = '\0';
    fclose(warn);
    CHECK(strstr(text, "line 5: not JSON") != NULL, "the garbage line is named: %s", text);
    CHECK(strstr(text, "line 6:") != NULL, "the torn line is named: %s", text);
    CHECK(r.n == 6 && r.line[4] == 7, "the record after the torn line starts line 7, got %d",
          r.n == 6 ? r.line[4] : -1);
    mt_registry_free(&r);
    CHECK(mt_registry_read("/nonexistent/registry.jsonl", &r, NULL, &e) == MT_ERR_REGISTRY,
          "a missing registry is an error");
    CHECK(mt_registry_valid_name("gpt2-small_v1.0") && !mt_registry_valid_name("a:b") &&
              !mt_registry_valid_name("a@b") && !mt_registry_valid_name("") &&
              !mt_registry_valid_name(".."),
          "model names");
}

static void test_concurrent(const char *dir) {
    char path[512];
    snprintf(path, sizeof path, "%s/concurrent.jsonl", dir);
    pid_t pids[WRITERS];
    for (int w = 0; w < WRITERS; w++) {
        pids[w] = fork();
        if (pids[w] == 0) {
            int bad = 0;
            for (int i = 0; i < EACH; i++) {
                cJSON *r = record("CHECKPOINT", "stress", w, i);
                mt_err e = {0};
                int64_t v;
                if (mt_registry_append(path, r, &v, &e)) {
                    fprintf(stderr, "writer %d: %s\n", w, e.msg);
                    bad = 1;
                }
                cJSON_Delete(r);
            }
            _exit(bad);
        }
    }
    int failed = 0;
    for (int w = 0; w < WRITERS; w++) {
        int st;
        waitpid(pids[w], &st, 0);
        failed += !WIFEXITED(st) || WEXITSTATUS(st) != 0;
    }
    CHECK(failed == 0, "%d writers failed", failed);
    mt_registry r;
    mt_err e = {0};
    CHECK(mt_registry_read(path, &r, stdout, &e) == 0, "read: %s", e.msg);
    CHECK(r.n == WRITERS * EACH && r.skipped == 0, "%d valid lines (want %d), %d skipped", r.n,
          WRITERS * EACH, r.skipped);
    char *seen_v = calloc(WRITERS * EACH + 1, 1), *seen_w = calloc(WRITERS * EACH, 1);
    int dup_v = 0, dup_w = 0, range = 0;
    for (int k = 0; k < r.n; k++) {
        int64_t v = (int64_t)mt_registry_num(r.rec[k], "model.version", 0);
        int w = (int)mt_registry_num(r.rec[k], "model.writer", -1);
        int i = (int)mt_registry_num(r.rec[k], "model.i", -1);
        if (v < 1 || v > WRITERS * EACH || w < 0 || w >= WRITERS || i < 0 || i >= EACH) {
            range++;
            continue;
        }
        dup_v += seen_v[v]++ > 0;
        dup_w += seen_w[w * EACH + i]++ > 0;
        if (k > 0 && v != (int64_t)mt_registry_num(r.rec[k - 1], "model.version", 0) + 1) range++;
    }
    CHECK(range == 0, "%d records out of range or out of order", range);
    CHECK(dup_v == 0, "%d duplicate versions", dup_v);
    CHECK(dup_w == 0, "%d duplicate records", dup_w);
    printf("concurrent: %d writers x %d records -> %d lines, versions 1..%d, %d duplicates\n",
           WRITERS, EACH, r.n, r.n, dup_v + dup_w);
    free(seen_v);
    free(seen_w);
    mt_registry_free(&r);
}

int main(void) {
    char dir[] = "/tmp/mt_test_registry.XXXXXX";
    if (!mkdtemp(dir)) return 1;
    test_versions(dir);
    test_concurrent(dir);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) printf("note: could not remove %s\n", dir);
    return mt_test_finish("test_registry");
}
