/*
 * Streaming guard for an image download: hashes as bytes arrive and refuses anything past the
 * declared size, so an endless or oversized response costs at most `size` bytes of flash writes.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "otaml_status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    void *sha; /* mbedtls_sha256_context, opaque here so callers need no mbedTLS headers */
    uint32_t expected_size;
    uint32_t received;
} otaml_download_t;

/** @return OTAML_OK, OTAML_ERR_NO_MEM. */
otaml_status_t otaml_download_start(otaml_download_t *d, uint32_t expected_size);
/**
 * Account for the next len bytes. @return OTAML_OK, or OTAML_ERR_SIZE if they would pass the declared
 * size (nothing is hashed then: the caller must stop reading and not write them).
 */
otaml_status_t otaml_download_feed(otaml_download_t *d, const uint8_t *data, size_t len);
/** @return OTAML_OK, OTAML_ERR_SIZE (fewer bytes than declared), OTAML_ERR_HASH. Frees the context. */
otaml_status_t otaml_download_finish(otaml_download_t *d, const uint8_t expected_sha256[32]);
/** Free the context without judging. Safe on a finished or never-started download. */
void otaml_download_free(otaml_download_t *d);

#ifdef __cplusplus
}
#endif
