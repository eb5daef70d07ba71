/* Release versions: 1 to 3 dot-separated numbers, compared as integers (manifests/README.md). */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    uint16_t major, minor, patch;
} otaml_version_t;

/**
 * Parse "1.2" or "1.2.3" (no leading zeros, components <= 65535, nothing else).
 * @return true on success; false leaves *out zeroed.
 */
bool otaml_version_parse(const char *text, otaml_version_t *out);

/** <0, 0, >0 as a sorts before, equal to, after b. */
int otaml_version_compare(const otaml_version_t *a, const otaml_version_t *b);

#ifdef __cplusplus
}
#endif
