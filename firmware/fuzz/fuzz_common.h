/* Shared by the harnesses: the pinned keys, a device context, and a check that stops the fuzzer. */
#pragma once

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "otaml_manifest.h"

/* Input layout of both harnesses: DOCUMENT [FUZZ_SIG_SEPARATOR SIGNATURE]. The separator cannot occur
 * in UTF-8, so a document that needs it is refused anyway; without it the signature is empty. */
#define FUZZ_SIG_SEPARATOR "\xff\xfe" /* fuzz_split looks for these two bytes */

/* Keyrings of the test release key and the test config key (built once). */
const otaml_keyring_t *fuzz_release_ring(void);
const otaml_keyring_t *fuzz_config_ring(void);

/* Split data into the document and a NUL-terminated signature (at most 255 characters, in sig). */
size_t fuzz_split(const uint8_t *data, size_t size, char sig[256]);

/* An invariant of the core is broken: abort, so libFuzzer records the input as a crash. */
#define FUZZ_ASSERT(cond)                                                              \
    do {                                                                               \
        if (!(cond)) {                                                                 \
            fprintf(stderr, "%s:%d: invariant broken: %s\n", __FILE__, __LINE__, #cond); \
            abort();                                                                   \
        }                                                                              \
    } while (0)
