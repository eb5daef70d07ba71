/*
 * libFuzzer harness for the manifest path: size cap, signature (strict base64, canonical DER, ECDSA),
 * strict parse, key id and policy. Input: BODY [0xFF 0xFE SIGNATURE] (fuzz_common.h).
 *
 * Arbitrary bytes almost never carry a valid signature, so the harness also hands the body to
 * otaml_policy_evaluate_verified() -- what otaml_policy_evaluate() runs once the signature verified --
 * to reach the parser and the policy. Nothing in the firmware is built differently for this: the
 * signature check is skipped by calling the next step, not by a flag.
 */
#include <string.h>

#include "fuzz_common.h"
#include "otaml_json.h"
#include "otaml_policy.h"

/* Not empty, and NUL-terminated inside its buffer. */
static bool prv_filled(const char *s, size_t size)
{
    size_t n = strnlen(s, size);
    return n >= 1 && n < size;
}

static void prv_check(const otaml_manifest_t *m, otaml_decision_t d, otaml_reason_t reason)
{
    FUZZ_ASSERT((d == OTAML_DECISION_REJECT) == (reason != OTAML_REASON_OK));
    if (d == OTAML_DECISION_REJECT && (reason == OTAML_REASON_MANIFEST_MALFORMED || reason == OTAML_REASON_BAD_SIGNATURE ||
                                       reason == OTAML_REASON_MANIFEST_TOO_LARGE)) {
        return;
    }
    /* It parsed: every field holds what the README allows, NUL-terminated inside its buffer. */
    otaml_version_t v;
    FUZZ_ASSERT(strnlen(m->semver, sizeof(m->semver)) < sizeof(m->semver) && otaml_version_parse(m->semver, &v));
    FUZZ_ASSERT(strnlen(m->file, sizeof(m->file)) < sizeof(m->file) && strncmp(m->file, "http", 4) == 0);
    FUZZ_ASSERT(prv_filled(m->project, sizeof(m->project)));
    FUZZ_ASSERT(prv_filled(m->chip, sizeof(m->chip)));
    FUZZ_ASSERT(prv_filled(m->channel, sizeof(m->channel)));
    FUZZ_ASSERT(strlen(m->key_id) == 16);
    FUZZ_ASSERT(m->size >= 1 && m->manifest_version >= 1 && m->manifest_version <= OTAML_JSON_MAX_SAFE_INTEGER);
    FUZZ_ASSERT(m->issued_at >= 0 && m->expires > m->issued_at && m->expires <= OTAML_JSON_MAX_SAFE_INTEGER);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char sig[256];
    size_t len = fuzz_split(data, size, sig);
    /* An exact-size copy, so ASan sees a read past the body (the agent's buffer is not NUL-terminated). */
    uint8_t *body = malloc(len ? len : 1);
    memcpy(body, data, len);

    otaml_policy_ctx_t ctx = {
        .now = 1795000000, .project = "otaml", .chip = "esp32", .channel = "stable", .secure_version = 1,
        .last_manifest_version = 5, .failed_version = "1.3", .slot_size = 1966080,
    };
    otaml_version_parse("1.1", &ctx.running_version);
    otaml_manifest_t m;
    otaml_reason_t reason;

    otaml_decision_t d = otaml_policy_evaluate(fuzz_release_ring(), body, len, sig, &ctx, &m, &reason);
    prv_check(&m, d, reason);
    if (len > OTAML_MAX_MANIFEST_BYTES) FUZZ_ASSERT(reason == OTAML_REASON_MANIFEST_TOO_LARGE);

    for (int trusted = 0; trusted < 2; trusted++) { /* with and without trusted time */
        ctx.now = trusted ? 1795000000 : 0;
        d = otaml_policy_evaluate_verified(body, len, fuzz_release_ring()->key_id[0], &ctx, &m, &reason);
        prv_check(&m, d, reason);
    }
    free(body);
    return 0;
}
