/* A minimal test harness: checks count failures, the run ends with "N passed, N failed". */
#pragma once

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int s_checks_passed, s_checks_failed;

#define CHECK(cond)                                                                   \
    do {                                                                              \
        if (cond) {                                                                   \
            s_checks_passed++;                                                        \
        } else {                                                                      \
            s_checks_failed++;                                                        \
            fprintf(stderr, "%s:%d: CHECK(%s) failed\n", __FILE__, __LINE__, #cond); \
        }                                                                             \
    } while (0)

#define CHECK_EQ_INT(a, b)                                                                              \
    do {                                                                                                \
        long long _a = (long long)(a), _b = (long long)(b);                                             \
        if (_a == _b) {                                                                                 \
            s_checks_passed++;                                                                          \
        } else {                                                                                        \
            s_checks_failed++;                                                                          \
            fprintf(stderr, "%s:%d: %s == %s failed: %lld != %lld\n", __FILE__, __LINE__, #a, #b, _a, _b); \
        }                                                                                               \
    } while (0)

#define CHECK_EQ_STR(a, b)                                                                                  \
    do {                                                                                                    \
        const char *_a = (a), *_b = (b);                                                                    \
        if (strcmp(_a, _b) == 0) {                                                                          \
            s_checks_passed++;                                                                              \
        } else {                                                                                            \
            s_checks_failed++;                                                                              \
            fprintf(stderr, "%s:%d: %s == %s failed: \"%s\" != \"%s\"\n", __FILE__, __LINE__, #a, #b, _a, _b); \
        }                                                                                                   \
    } while (0)

static inline int test_summary(void)
{
    printf("%d passed, %d failed\n", s_checks_passed, s_checks_failed);
    return s_checks_failed ? 1 : 0;
}

static inline char *test_read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        fprintf(stderr, "cannot open %s\n", path);
        exit(2);
    }
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    if (buf == NULL || fread(buf, 1, (size_t)n, f) != (size_t)n) exit(2);
    buf[n] = '\0';
    fclose(f);
    if (len) *len = (size_t)n;
    return buf;
}
