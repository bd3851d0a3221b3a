/*
 * test_util.h - tiny assertion helpers for the C test programs: each check
 * prints what it compared and by how much, and the program exits non-zero
 * if any check failed.
 */
#ifndef MT_TEST_UTIL_H
#define MT_TEST_UTIL_H

#include <math.h>
#include <stdio.h>

static int mt_test_failures = 0;
static int mt_test_checks = 0;

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        mt_test_checks++;                                                                          \
        if (!(cond)) {                                                                             \
            mt_test_failures++;                                                                    \
            printf("FAIL %s:%d: ", __FILE__, __LINE__);                                            \
            printf(__VA_ARGS__);                                                                   \
            printf("\n");                                                                          \
        }                                                                                          \
    } while (0)

static inline int mt_test_finish(const char *name) {
    printf("%s: %d checks, %d passed, %d failed\n", name, mt_test_checks,
           mt_test_checks - mt_test_failures, mt_test_failures);
    return mt_test_failures ? 1 : 0;
}

#endif
