/*
 * The device token's life on the device (manifests/README.md, "Device tokens"): claiming one with a fleet
 * claim token, and taking a rotated one from a check-in answer. Every step writes NVS before it relies on
 * it, so a power cut anywhere leaves a token that the server accepts:
 *   claim:    the device chooses its token (claim_new), then asks the server to register it; an answer
 *             of 201 or 202 (pending approval) makes it the device token. Asking again after a reset
 *             sends the same token, which the server answers the same way.
 *   rotation: the handed-over token is stored (token_nx) before the first request that uses it; it
 *             replaces token once the server accepted a check-in made with it (from then on the server
 *             refuses the old one). After a reset, token_nx is tried first.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>

#include "otaml_agent.h"
#include "otaml_agent_priv.h"

static const char *TAG = "otaml_token";

#define TOKEN_MIN 16
#define CLAIM_RANDOM_BYTES 24 /* 32 base64url characters, as the server's own tokens */

bool otaml_token_valid(const char *t)
{
    size_t n = strlen(t);
    if (n < TOKEN_MIN || n > OTAML_MAX_TOKEN) return false;
    for (size_t i = 0; i < n; i++) {
        char c = t[i];
        bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
        if (!ok) return false;
    }
    return true;
}

const char *otaml_agent_auth_token(const otaml_agent_t *a) { return a->token_next[0] ? a->token_next : a->token; }

bool otaml_agent_token_answer(otaml_agent_t *a, const otaml_http_response_t *resp, bool from_server)
{
    if (!from_server) return false;
    if (a->token_next[0]) {
        if (resp->status == 401) {
            OTAML_LOGW(TAG, "the server refused the rotated token: keeping the previous one");
            otaml_port_store_erase("token_nx");
            a->token_next[0] = '\0';
            return true;
        }
        if (otaml_port_store_set_str("token", a->token_next) != OTAML_OK) {
            OTAML_LOGE(TAG, "cannot store the rotated token; trying it again at the next check-in");
            return false;
        }
        otaml_port_store_erase("token_nx");
        snprintf(a->token, sizeof(a->token), "%s", a->token_next);
        a->token_next[0] = '\0';
        OTAML_LOGI(TAG, "rotated device token in use");
    }
    if (resp->new_token[0] && resp->status != 401 && strcmp(resp->new_token, a->token) != 0) {
        if (!otaml_token_valid(resp->new_token)) {
            OTAML_LOGW(TAG, "ignoring a new token that is not 16 to 64 characters of A-Z a-z 0-9 - _");
        } else if (otaml_port_store_set_str("token_nx", resp->new_token) == OTAML_OK) {
            snprintf(a->token_next, sizeof(a->token_next), "%s", resp->new_token);
            OTAML_LOGI(TAG, "the server rotated this device's token: using the new one from the next request");
        }
    }
    return false;
}

static void prv_b64url(const uint8_t *in, size_t n, char *out)
{
    static const char abc[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    size_t o = 0;
    for (size_t i = 0; i + 2 < n; i += 3) { /* n is a multiple of 3: no padding */
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        out[o++] = abc[(v >> 18) & 63];
        out[o++] = abc[(v >> 12) & 63];
        out[o++] = abc[(v >> 6) & 63];
        out[o++] = abc[v & 63];
    }
    out[o] = '\0';
}

otaml_status_t otaml_agent_claim(otaml_agent_t *a)
{
    if (a->token[0] != '\0') return OTAML_OK;
    if (a->cfg.claim_token == NULL || !otaml_token_valid(a->cfg.claim_token)) return OTAML_ERR_INVALID_ARG;
    char mine[OTAML_MAX_TOKEN + 1];
    if (otaml_port_store_get_str("claim_new", mine, sizeof(mine)) != OTAML_OK || !otaml_token_valid(mine)) {
        uint8_t random[CLAIM_RANDOM_BYTES];
        OTAML_RETURN_IF_ERROR(otaml_port_random_bytes(random, sizeof(random)));
        prv_b64url(random, sizeof(random), mine);
        OTAML_RETURN_IF_ERROR(otaml_port_store_set_str("claim_new", mine)); /* before it leaves the device */
    }
    cJSON *obj = cJSON_CreateObject();
    if (obj == NULL) return OTAML_ERR_NO_MEM;
    cJSON_AddStringToObject(obj, "device_id", a->cfg.device_id);
    cJSON_AddStringToObject(obj, "token", mine);
    char *body = cJSON_PrintUnformatted(obj);
    cJSON_Delete(obj);
    if (body == NULL) return OTAML_ERR_NO_MEM;
    char url[sizeof(a->manifest_url)], auth[OTAML_MAX_TOKEN + 8];
    snprintf(url, sizeof(url), "%s/api/claim", a->cfg.server_url);
    snprintf(auth, sizeof(auth), "Bearer %s", a->cfg.claim_token);
    const otaml_header_t headers[] = {{"Authorization", auth}};
    int status = 0;
    otaml_status_t st = otaml_port_http_post(url, headers, 1, "application/json", body, strlen(body), &status);
    free(body);
    if (st != OTAML_OK) {
        OTAML_LOGW(TAG, "claim: server unreachable (%s); trying again at the next poll", otaml_status_to_str(st));
        return st;
    }
    if (status != 201 && status != 202) {
        /* 401: the claim token expired, was used up or revoked; 409: the id is taken by another device. */
        OTAML_LOGE(TAG, "claim of %s refused: HTTP %d", a->cfg.device_id, status);
        return OTAML_ERR_HTTP_STATUS;
    }
    OTAML_RETURN_IF_ERROR(otaml_port_store_set_str("token", mine));
    otaml_port_store_erase("claim_new");
    otaml_port_store_erase("claim"); /* a device that has its own token keeps no fleet secret */
    snprintf(a->token, sizeof(a->token), "%s", mine);
    OTAML_LOGI(TAG, "claimed %s%s", a->cfg.device_id, status == 202 ? ": waiting for an operator to accept it" : "");
    return OTAML_OK;
}

/* ---- key sets (manifests/README.md, "Key rotation") ---- */

static const char *KS_TAG = "otaml_keyset";

static void prv_keyset_use(otaml_agent_t *a, const otaml_keyset_t *set)
{
    a->keyset = *set;
    if (otaml_keyset_keyring(&a->keyset, &a->keyset_ring) != OTAML_OK) {
        OTAML_LOGE(KS_TAG, "key set %llu holds an unusable key: keeping the keys in use",
                   (unsigned long long)set->version);
        return;
    }
    a->ring = &a->keyset_ring;
    a->keyset_version = set->version;
    char ids[OTAML_MAX_KEYS * 17 + 1] = "";
    for (size_t i = 0; i < a->keyset.count; i++) {
        strcat(ids, a->keyset.key_id[i]);
        if (i + 1 < a->keyset.count) strcat(ids, " ");
    }
    OTAML_LOGI(KS_TAG, "manifests are verified with key set %llu: %s", (unsigned long long)set->version, ids);
}

void otaml_agent_keyset_load(otaml_agent_t *a)
{
    char *b64 = malloc(OTAML_MAX_KEYSET_B64 + 1);
    uint8_t *body = malloc(OTAML_MAX_KEYSET_B64 / 4 * 3);
    otaml_keyset_t *set = malloc(sizeof(*set));
    size_t len = 0;
    if (b64 != NULL && body != NULL && set != NULL &&
        otaml_port_store_get_str("keyset", b64, OTAML_MAX_KEYSET_B64 + 1) == OTAML_OK) {
        /* It was verified with the keys in use when it arrived; here it is parsed by the same rules again,
         * and one that no longer parses, or is not newer than the built-in set, is not used. */
        if (otaml_base64_decode_strict(b64, strlen(b64), body, OTAML_MAX_KEYSET_B64 / 4 * 3, &len) != OTAML_OK ||
            otaml_keyset_parse(body, len, set) != OTAML_OK || strcmp(set->project, a->cfg.project) != 0) {
            OTAML_LOGE(KS_TAG, "stored key set unreadable: verifying with the built-in keys");
        } else if (set->version > a->keyset_version) {
            prv_keyset_use(a, set);
        }
    }
    free(set);
    free(body);
    free(b64);
}

void otaml_agent_keyset_take(otaml_agent_t *a, const otaml_http_response_t *resp)
{
    if (resp->keyset == NULL || resp->keyset[0] == '\0') return;
    otaml_keyset_t *set = malloc(sizeof(*set));
    if (set == NULL) return;
    otaml_keyset_verdict_t v = otaml_keyset_verify(a->ring, resp->keyset, resp->keyset_signature, a->cfg.project,
                                                   a->keyset_version, set);
    if (v != OTAML_KEYSET_OK) {
        OTAML_LOGW(KS_TAG, "key set refused: %s (keeping key set %llu)", otaml_keyset_verdict_to_str(v),
                   (unsigned long long)a->keyset_version);
    } else if (otaml_port_store_set_str("keyset", resp->keyset) != OTAML_OK) {
        /* Stored first: a key set in use but lost at the next reset would make the device refuse the manifests
         * of the new keys until the server sent the chain again. */
        OTAML_LOGE(KS_TAG, "cannot store key set %llu; taking it at the next poll", (unsigned long long)set->version);
    } else {
        prv_keyset_use(a, set);
    }
    free(set);
}
