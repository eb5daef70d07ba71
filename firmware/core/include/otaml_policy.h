/*
 * Whether a device takes a manifest: the ordered checks of manifests/README.md ("Device checks").
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "otaml_manifest.h"
#include "otaml_protocol.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    int64_t now;                    /* trusted Unix time, 0 if the device has none */
    otaml_version_t running_version;
    const char *project;
    const char *chip;
    const char *channel;
    uint32_t secure_version;        /* of the running image */
    uint64_t last_manifest_version; /* installed from; 0 if never */
    const char *failed_version;     /* last version that rolled back here; "" if none */
    size_t slot_size;               /* bytes available in the passive slot */
} otaml_policy_ctx_t;

typedef enum {
    OTAML_DECISION_UPDATE,    /* download and install manifest->file */
    OTAML_DECISION_NO_UPDATE, /* nothing to do; not an error */
    OTAML_DECISION_REJECT,    /* refused; *reason says why, to be reported */
} otaml_decision_t;

/**
 * Size cap, signature, parse, key id, then policy, in that order; the first failure decides.
 * @param out filled when the manifest parsed (also for NO_UPDATE and policy rejections).
 * @param reason OTAML_REASON_OK unless the decision is REJECT.
 */
otaml_decision_t otaml_policy_evaluate(const otaml_keyring_t *ring, const uint8_t *body, size_t len,
                                       const char *signature_b64, const otaml_policy_ctx_t *ctx,
                                       otaml_manifest_t *out, otaml_reason_t *reason);

/**
 * Checks 3-11 (parse, key id, policy) on bytes whose signature already verified with the pinned key
 * `key_id`. otaml_policy_evaluate ends with it; the fuzz harness (firmware/fuzz) calls it to reach
 * the parser without a signing key. Never call it on bytes that did not verify.
 */
otaml_decision_t otaml_policy_evaluate_verified(const uint8_t *body, size_t len, const char *key_id,
                                                const otaml_policy_ctx_t *ctx, otaml_manifest_t *out,
                                                otaml_reason_t *reason);

/** The policy checks alone, on a verified and parsed manifest. */
otaml_decision_t otaml_policy_check(const otaml_manifest_t *m, const otaml_policy_ctx_t *ctx,
                                    otaml_reason_t *reason);

/** Name of a decision ("update", "no_update", "reject"). */
const char *otaml_decision_to_str(otaml_decision_t decision);

#ifdef __cplusplus
}
#endif
