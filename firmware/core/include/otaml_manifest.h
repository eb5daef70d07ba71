/*
 * firmware.json: verifying the detached signature over the raw bytes, then parsing.
 * Security-critical: nothing here trusts a byte before otaml_manifest_verify() accepted it.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "otaml_status.h"
#include "otaml_version.h"

#ifdef __cplusplus
extern "C" {
#endif

#define OTAML_MAX_KEYS 4

/** The public keys a device pins (PEM, NUL-terminated), with their key ids. */
typedef struct {
    size_t count;
    const char *pem[OTAML_MAX_KEYS];
    char key_id[OTAML_MAX_KEYS][17];
} otaml_keyring_t;

typedef struct {
    double legacy_version;
    char file[256];
    char semver[18];
    otaml_version_t version;
    uint8_t sha256[32];
    uint32_t size;
    char project[32];
    char chip[16];
    uint32_t secure_version;
    char channel[33];
    uint64_t manifest_version;
    int64_t issued_at;
    int64_t expires;
    char key_id[17];
} otaml_manifest_t;

/**
 * Build a keyring from PEM public keys; computes each key id (first 16 hex digits of SHA-256 over
 * the DER SubjectPublicKeyInfo). The PEM strings must outlive the keyring.
 * @return OTAML_OK, OTAML_ERR_INVALID_ARG (more than OTAML_MAX_KEYS), OTAML_ERR_PARSE (not a P-256
 *         public key PEM).
 */
otaml_status_t otaml_keyring_init(otaml_keyring_t *ring, const char *const *pems, size_t count);

/**
 * Verify a base64 DER ECDSA P-256/SHA-256 signature over body with the keyring.
 * @param key_index set to the index of the key that verified (may be NULL).
 * @return OTAML_OK; OTAML_ERR_TOO_LARGE (body over OTAML_MAX_MANIFEST_BYTES, checked first);
 *         OTAML_ERR_SIGNATURE (not base64, not DER, or no pinned key verifies); OTAML_ERR_NO_MEM.
 */
otaml_status_t otaml_manifest_verify(const otaml_keyring_t *ring, const uint8_t *body, size_t len,
                                     const char *signature_b64, size_t *key_index);

/**
 * Parse verified bytes. Requires every field of manifests/firmware.schema.json with its type and
 * range; ignores unknown fields.
 * @return OTAML_OK, OTAML_ERR_PARSE (with the offending field logged), OTAML_ERR_NO_MEM.
 */
otaml_status_t otaml_manifest_parse(const uint8_t *body, size_t len, otaml_manifest_t *out);

#ifdef __cplusplus
}
#endif
