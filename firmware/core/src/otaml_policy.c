/* The device's ordered checks (manifests/README.md, "Device checks"). */
#include <string.h>

#include "otaml_policy.h"
#include "otaml_port.h"

static const char *TAG = "otaml_policy";

const char *otaml_decision_to_str(otaml_decision_t decision)
{
    switch (decision) {
    case OTAML_DECISION_UPDATE: return "update";
    case OTAML_DECISION_NO_UPDATE: return "no_update";
    case OTAML_DECISION_REJECT: return "reject";
    }
    return "reject";
}

static otaml_decision_t prv_reject(otaml_reason_t *reason, otaml_reason_t why)
{
    *reason = why;
    return OTAML_DECISION_REJECT;
}

otaml_decision_t otaml_policy_check(const otaml_manifest_t *m, const otaml_policy_ctx_t *ctx, otaml_reason_t *reason)
{
    *reason = OTAML_REASON_OK;
    if (strcmp(m->project, ctx->project) != 0) return prv_reject(reason, OTAML_REASON_PROJECT_MISMATCH);
    if (strcmp(m->chip, ctx->chip) != 0) return prv_reject(reason, OTAML_REASON_CHIP_MISMATCH);
    if (strcmp(m->channel, ctx->channel) != 0) return prv_reject(reason, OTAML_REASON_CHANNEL_MISMATCH);
    /* Without trusted time expiry cannot be judged; the replay rule below still bounds a freeze to the
     * last manifest this device installed from. */
    if (ctx->now > 0 && m->expires <= ctx->now) return prv_reject(reason, OTAML_REASON_MANIFEST_EXPIRED);
    if (m->manifest_version < ctx->last_manifest_version) return prv_reject(reason, OTAML_REASON_MANIFEST_REPLAYED);
    if (m->manifest_version == ctx->last_manifest_version) return OTAML_DECISION_NO_UPDATE;
    if (otaml_version_compare(&m->version, &ctx->running_version) <= 0) return OTAML_DECISION_NO_UPDATE;
    if (ctx->failed_version != NULL && strcmp(m->semver, ctx->failed_version) == 0) {
        return prv_reject(reason, OTAML_REASON_VERSION_FAILED_BEFORE);
    }
    if (m->secure_version < ctx->secure_version) return prv_reject(reason, OTAML_REASON_SECURE_VERSION_LOWER);
    if (m->size > ctx->slot_size) return prv_reject(reason, OTAML_REASON_IMAGE_TOO_LARGE);
    return OTAML_DECISION_UPDATE;
}

otaml_decision_t otaml_policy_evaluate_verified(const uint8_t *body, size_t len, const char *key_id,
                                                const otaml_policy_ctx_t *ctx, otaml_manifest_t *out,
                                                otaml_reason_t *reason)
{
    *reason = OTAML_REASON_OK;
    if (otaml_manifest_parse(body, len, out) != OTAML_OK) return prv_reject(reason, OTAML_REASON_MANIFEST_MALFORMED);
    if (strcmp(out->key_id, key_id) != 0) {
        OTAML_LOGW(TAG, "manifest names key %s but key %s verified it", out->key_id, key_id);
        return prv_reject(reason, OTAML_REASON_KEY_MISMATCH);
    }
    return otaml_policy_check(out, ctx, reason);
}

otaml_decision_t otaml_policy_evaluate(const otaml_keyring_t *ring, const uint8_t *body, size_t len,
                                       const char *signature_b64, const otaml_policy_ctx_t *ctx,
                                       otaml_manifest_t *out, otaml_reason_t *reason)
{
    memset(out, 0, sizeof(*out));
    *reason = OTAML_REASON_OK;
    size_t key_index = 0;
    otaml_status_t st = otaml_manifest_verify(ring, body, len, signature_b64, &key_index);
    if (st == OTAML_ERR_TOO_LARGE) return prv_reject(reason, OTAML_REASON_MANIFEST_TOO_LARGE);
    if (st != OTAML_OK) return prv_reject(reason, OTAML_REASON_BAD_SIGNATURE);
    return otaml_policy_evaluate_verified(body, len, ring->key_id[key_index], ctx, out, reason);
}
