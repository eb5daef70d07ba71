/*
 * Key sets: release-key rotation without reflashing (manifests/README.md, "Key rotation"). A key set is a
 * small signed JSON document naming the keys devices verify manifests with; set N+1 must be signed by a
 * key of set N (set 0: the keys built into the image), and only a higher version than the one in use is
 * applied. Security-critical: nothing is parsed before the signature verified with the keyring in use.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "otaml_manifest.h"
#include "otaml_status.h"

#ifdef __cplusplus
extern "C" {
#endif

#define OTAML_MAX_KEYSET_BYTES 1024
#define OTAML_MAX_KEYSET_B64 1368 /* base64 of 1024 bytes */
#define OTAML_KEYSET_PEM_MAX 192  /* PEM of a P-256 SubjectPublicKeyInfo (about 178 bytes) */

/* Verdicts, in the order the checks run; the wire names match server/otaml/manifest/keyset.py. */
#define OTAML_KEYSET_VERDICT_LIST(X)                            \
    X(OTAML_KEYSET_OK, "ok")                                    \
    X(OTAML_KEYSET_TOO_LARGE, "keyset_too_large")               \
    X(OTAML_KEYSET_BAD_SIGNATURE, "bad_signature")              \
    X(OTAML_KEYSET_MALFORMED, "keyset_malformed")               \
    X(OTAML_KEYSET_PROJECT_MISMATCH, "project_mismatch")        \
    X(OTAML_KEYSET_REPLAYED, "keyset_replayed")

typedef enum {
#define OTAML_X_ENUM(name, text) name,
    OTAML_KEYSET_VERDICT_LIST(OTAML_X_ENUM)
#undef OTAML_X_ENUM
} otaml_keyset_verdict_t;

const char *otaml_keyset_verdict_to_str(otaml_keyset_verdict_t verdict);

typedef struct {
    uint64_t version;
    char project[32];
    size_t count;
    char key_id[OTAML_MAX_KEYS][17];
    char pem[OTAML_MAX_KEYS][OTAML_KEYSET_PEM_MAX]; /* each key as PEM, for otaml_keyring_init */
} otaml_keyset_t;

/**
 * Parse key-set bytes by the strict JSON rules and the key-set field rules (manifests/README.md,
 * "Key-set fields"): `keyset_version` an integer literal in 1..2^53-1; `project` [A-Za-z0-9._+-]{1,31};
 * `keys` an array of 1..OTAML_MAX_KEYS objects, each with `key_id` (16 lowercase hex digits, the first
 * 8 bytes of SHA-256 over the key's DER) and `public_key` (S1 base64 of the 91-byte DER
 * SubjectPublicKeyInfo of an uncompressed P-256 point on the curve), no key id twice. Unknown fields are
 * ignored. @return OTAML_OK, OTAML_ERR_PARSE, OTAML_ERR_TOO_LARGE (over OTAML_MAX_KEYSET_BYTES),
 * OTAML_ERR_NO_MEM.
 */
otaml_status_t otaml_keyset_parse(const uint8_t *body, size_t len, otaml_keyset_t *out);

/**
 * The device's checks on a key set received as X-Otaml-Keyset / X-Otaml-Keyset-Signature, in order:
 * base64 over OTAML_MAX_KEYSET_B64 characters or a document over OTAML_MAX_KEYSET_BYTES -> too_large;
 * the document not S1 base64, or the signature not S1 or not made by a key of `trusted` over the
 * decoded bytes -> bad_signature; otaml_keyset_parse refuses -> malformed; `project` differs ->
 * project_mismatch; `keyset_version` not above current_version -> replayed (an old set sent again).
 * `out` is filled only for OTAML_KEYSET_OK.
 */
otaml_keyset_verdict_t otaml_keyset_verify(const otaml_keyring_t *trusted, const char *doc_b64, const char *sig_b64,
                                           const char *project, uint64_t current_version, otaml_keyset_t *out);

/** A keyring of the set's keys (its PEMs must outlive the ring). @return as otaml_keyring_init. */
otaml_status_t otaml_keyset_keyring(const otaml_keyset_t *set, otaml_keyring_t *ring);

#ifdef __cplusplus
}
#endif
