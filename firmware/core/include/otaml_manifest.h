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
 * Decode base64 spelled one way (manifests/README.md, "Signature", S1): only A-Z a-z 0-9 + /, a
 * multiple of 4 characters and not empty, '=' only as the last one or two; no spaces or line breaks.
 * @return OTAML_OK; OTAML_ERR_PARSE (any other text); OTAML_ERR_TOO_LARGE (cap cannot hold it).
 */
otaml_status_t otaml_base64_decode_strict(const char *b64, size_t b64_len, uint8_t *out, size_t cap, size_t *out_len);

/**
 * Verify a base64 DER ECDSA P-256/SHA-256 signature over body with the keyring.
 * @param key_index set to the index of the key that verified (may be NULL).
 * @return OTAML_OK; OTAML_ERR_TOO_LARGE (body over OTAML_MAX_MANIFEST_BYTES, checked first);
 *         OTAML_ERR_SIGNATURE (over OTAML_MAX_SIGNATURE_B64 characters, not strict base64, not
 *         canonical DER -- short-form lengths, minimal non-negative INTEGERs of at most 33 bytes, nothing
 *         after the SEQUENCE -- or no pinned key verifies); OTAML_ERR_INVALID_ARG.
 */
otaml_status_t otaml_manifest_verify(const otaml_keyring_t *ring, const uint8_t *body, size_t len,
                                     const char *signature_b64, size_t *key_index);

/**
 * Parse verified bytes by manifests/README.md, "Strict JSON" and "Manifest fields". Refuses, with
 * OTAML_ERR_PARSE and the rule logged: anything otaml_json_parse() refuses (J1-J6); a missing field;
 * `version` not a number or not MAJOR.MINOR of `semver`; `file` not a string of at most 255 bytes in
 * the URL grammar; `semver` not 1 to 3 components of at most 65535 without leading zeros; `sha256` not
 * 64 lowercase hex digits; `size` not an integer literal in 1..2^32-1; `project` not
 * [A-Za-z0-9._+-]{1,31}; `chip` not [a-z0-9]{1,15}; `secure_version` not an integer literal in
 * 0..2^32-1; `channel` not [a-z0-9][a-z0-9._-]{0,31}; `manifest_version` not an integer literal in
 * 1..2^53-1; `issued_at` / `expires` not integer literals in 0..2^53-1, or `expires` not above
 * `issued_at`; `key_id` not 16 lowercase hex digits. Unknown fields are ignored (they obey J1-J6).
 * @return OTAML_OK, OTAML_ERR_PARSE, OTAML_ERR_TOO_LARGE (over OTAML_MAX_MANIFEST_BYTES),
 *         OTAML_ERR_NO_MEM (the token table is allocated: about 2 KB).
 */
otaml_status_t otaml_manifest_parse(const uint8_t *body, size_t len, otaml_manifest_t *out);

#ifdef __cplusplus
}
#endif
