/*
 * fuzz_config.c - libFuzzer target: the configuration parser (core/config.c):
 * INI text through mt_config_parse, then `--set section.key=value`
 * overrides through mt_config_set, then mt_config_validate.
 *
 * Input: the INI text up to the first NUL byte; after it, one override per
 * line (at most 16). Properties checked besides the sanitizers': every
 * failure is a usage error (exit 2) with a message; and a configuration
 * that parses and validates must come back from its own resolved text
 * (mt_config_text) - what run folders and checkpoints store must parse again.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/config.h"
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void expect_usage(const mt_err *e, const char *what) {
    fz_check_err(e, what);
    if (e->code != MT_ERR_USAGE) {
        fprintf(stderr, "fuzz: %s failed with code %d, not a usage error: %s\n", what, e->code,
                e->msg);
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static mt_config c; /* ~100 KB: off the stack */
    char *buf = malloc(size + 1);
    if (!buf) return 0;
    memcpy(buf, data, size);
    buf[size] = '\0';
    size_t ini_len = strlen(buf);
    mt_config_defaults(&c);
    mt_err e = {0};
    if (mt_config_parse(&c, buf, "fuzz.ini", &e)) {
        expect_usage(&e, "mt_config_parse");
        free(buf);
        return 0;
    }
    /* the overrides: lines after the NUL */
    char *p = ini_len < size ? buf + ini_len + 1 : buf + size;
    for (int i = 0; i < 16 && p < buf + size && !e.code; i++) {
        char *nl = memchr(p, '\n', (size_t)(buf + size - p));
        if (nl) *nl = '\0';
        if (mt_config_set(&c, p, &e)) expect_usage(&e, "mt_config_set");
        p = nl ? nl + 1 : buf + size;
        if (strlen(p) < (size_t)(buf + size - p)) break; /* another NUL: the end */
    }
    if (!e.code && mt_config_validate(&c, &e)) expect_usage(&e, "mt_config_validate");
    if (!e.code) {
        char *text = NULL;
        if (mt_config_text(&c, &text, &e)) {
            fprintf(stderr, "fuzz: a valid configuration does not read back: %s\n", e.msg);
            abort();
        }
        free(text);
    }
    free(buf);
    return 0;
}
