#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "otaml_download.h"
#include "otaml_mbedtls_compat.h"

otaml_status_t otaml_download_start(otaml_download_t *d, uint32_t expected_size)
{
    memset(d, 0, sizeof(*d));
    mbedtls_sha256_context *sha = calloc(1, sizeof(*sha));
    if (sha == NULL) return OTAML_ERR_NO_MEM;
    mbedtls_sha256_init(sha);
    otaml_sha256_starts(sha);
    d->sha = sha;
    d->expected_size = expected_size;
    return OTAML_OK;
}

otaml_status_t otaml_download_feed(otaml_download_t *d, const uint8_t *data, size_t len)
{
    if (d->sha == NULL) return OTAML_ERR_STATE;
    if (len > (size_t)(d->expected_size - d->received)) return OTAML_ERR_SIZE;
    otaml_sha256_update((mbedtls_sha256_context *)d->sha, data, len);
    d->received += (uint32_t)len;
    return OTAML_OK;
}

otaml_status_t otaml_download_finish(otaml_download_t *d, const uint8_t expected_sha256[32])
{
    if (d->sha == NULL) return OTAML_ERR_STATE;
    uint8_t digest[32];
    otaml_sha256_finish((mbedtls_sha256_context *)d->sha, digest);
    bool complete = d->received == d->expected_size;
    otaml_download_free(d);
    if (!complete) return OTAML_ERR_SIZE;
    /* Not secret: the expected digest is in the signed manifest, so a plain compare is fine. */
    return memcmp(digest, expected_sha256, 32) == 0 ? OTAML_OK : OTAML_ERR_HASH;
}

void otaml_download_free(otaml_download_t *d)
{
    if (d->sha != NULL) {
        mbedtls_sha256_free((mbedtls_sha256_context *)d->sha);
        free(d->sha);
        d->sha = NULL;
    }
}
