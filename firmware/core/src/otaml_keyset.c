/*
 * Key sets (otaml_keyset.h): size, then signature with the keys in use, then strict parsing, then the
 * project and version rules. Mirrors server/otaml/manifest/keyset.py; the adversarial corpus holds both
 * to the same verdicts.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mbedtls/base64.h>
#include <mbedtls/pk.h>

#include "otaml_json.h"
#include "otaml_keyset.h"
#include "otaml_mbedtls_compat.h"
#include "otaml_port.h"

static const char *TAG = "otaml_keyset";

#define SPKI_BYTES 91
/* SEQUENCE { SEQUENCE { id-ecPublicKey, prime256v1 }, BIT STRING (0 unused bits, 0x04 uncompressed) } */
static const uint8_t SPKI_PREFIX[26] = {0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01,
                                        0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00};

const char *otaml_keyset_verdict_to_str(otaml_keyset_verdict_t verdict)
{
    switch (verdict) {
#define OTAML_X_CASE(name, text) \
    case name:                   \
        return text;
        OTAML_KEYSET_VERDICT_LIST(OTAML_X_CASE)
#undef OTAML_X_CASE
    }
    return "unknown";
}

static bool prv_matches(const char *s, size_t min, size_t max, const char *extra)
{
    size_t n = strlen(s);
    if (n < min || n > max) return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || strchr(extra, c) != NULL;
        if (!ok || c == '\0') return false;
    }
    return true;
}

static bool prv_lower_hex16(const char *s)
{
    if (strlen(s) != 16) return false;
    for (size_t i = 0; i < 16; i++) {
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) return false;
    }
    return true;
}

/* DER -> PEM with 64-character lines, as mbedtls_pk_parse_public_key reads it. */
static otaml_status_t prv_pem(const uint8_t *der, size_t len, char *out, size_t size)
{
    char b64[160];
    size_t n = 0;
    if (mbedtls_base64_encode((unsigned char *)b64, sizeof(b64), &n, der, len) != 0) return OTAML_ERR_PARSE;
    size_t o = (size_t)snprintf(out, size, "-----BEGIN PUBLIC KEY-----\n");
    for (size_t i = 0; i < n; i += 64) {
        size_t chunk = n - i < 64 ? n - i : 64;
        if (o + chunk + 2 >= size) return OTAML_ERR_TOO_LARGE;
        memcpy(out + o, b64 + i, chunk);
        o += chunk;
        out[o++] = '\n';
    }
    int w = snprintf(out + o, size - o, "-----END PUBLIC KEY-----\n");
    return w > 0 && (size_t)w < size - o ? OTAML_OK : OTAML_ERR_TOO_LARGE;
}

static otaml_status_t prv_key(const otaml_json_t *doc, int obj, otaml_keyset_t *out)
{
    char key_id[17], b64[160];
    uint8_t der[120];
    size_t der_len = 0, b64_len = 0;
    int tid = otaml_json_get(doc, obj, "key_id"), tpk = otaml_json_get(doc, obj, "public_key");
    if (tid < 0 || tpk < 0 || otaml_json_string(doc, tid, key_id, sizeof(key_id), NULL) != OTAML_OK ||
        !prv_lower_hex16(key_id)) {
        OTAML_LOGW(TAG, "key_id: expected 16 lowercase hex digits");
        return OTAML_ERR_PARSE;
    }
    if (otaml_json_string(doc, tpk, b64, sizeof(b64), &b64_len) != OTAML_OK ||
        otaml_base64_decode_strict(b64, b64_len, der, sizeof(der), &der_len) != OTAML_OK || der_len != SPKI_BYTES ||
        memcmp(der, SPKI_PREFIX, sizeof(SPKI_PREFIX)) != 0) {
        OTAML_LOGW(TAG, "public_key: expected S1 base64 of a 91-byte P-256 SubjectPublicKeyInfo");
        return OTAML_ERR_PARSE;
    }
    mbedtls_pk_context pk;
    mbedtls_pk_init(&pk);
    int rc = mbedtls_pk_parse_public_key(&pk, der, der_len); /* also checks the point is on the curve */
    bool ec = rc == 0 && mbedtls_pk_can_do(&pk, MBEDTLS_PK_ECDSA);
    mbedtls_pk_free(&pk);
    if (!ec) {
        OTAML_LOGW(TAG, "public_key: not a P-256 point (mbedtls -0x%04x)", (unsigned)-rc);
        return OTAML_ERR_PARSE;
    }
    uint8_t digest[32];
    char computed[17];
    if (otaml_sha256(der, der_len, digest) != 0) return OTAML_ERR_PARSE;
    for (int i = 0; i < 8; i++) snprintf(computed + 2 * i, 3, "%02x", digest[i]);
    if (strcmp(computed, key_id) != 0) {
        OTAML_LOGW(TAG, "key_id %s is not its key's id %s", key_id, computed);
        return OTAML_ERR_PARSE;
    }
    for (size_t i = 0; i < out->count; i++) {
        if (strcmp(out->key_id[i], key_id) == 0) {
            OTAML_LOGW(TAG, "key %s appears twice", key_id);
            return OTAML_ERR_PARSE;
        }
    }
    OTAML_RETURN_IF_ERROR(prv_pem(der, der_len, out->pem[out->count], sizeof(out->pem[0])));
    memcpy(out->key_id[out->count], key_id, sizeof(key_id));
    out->count++;
    return OTAML_OK;
}

static otaml_status_t prv_fields(const otaml_json_t *doc, otaml_keyset_t *out)
{
    int64_t version = 0;
    int tv = otaml_json_get(doc, 0, "keyset_version");
    if (tv < 0 || doc->tok[tv].type != OTAML_JSON_NUMBER || !(doc->tok[tv].flags & OTAML_JSON_F_INTEGER) ||
        otaml_json_integer(doc, tv, &version) != OTAML_OK || version < 1) {
        OTAML_LOGW(TAG, "keyset_version: expected an integer literal from 1 to 2^53-1");
        return OTAML_ERR_PARSE;
    }
    out->version = (uint64_t)version;
    int tp = otaml_json_get(doc, 0, "project");
    if (tp < 0 || otaml_json_string(doc, tp, out->project, sizeof(out->project), NULL) != OTAML_OK ||
        !prv_matches(out->project, 1, 31, "._+-")) {
        OTAML_LOGW(TAG, "project: expected [A-Za-z0-9._+-]{1,31}");
        return OTAML_ERR_PARSE;
    }
    int tk = otaml_json_get(doc, 0, "keys");
    if (tk < 0 || doc->tok[tk].type != OTAML_JSON_ARRAY) {
        OTAML_LOGW(TAG, "keys: expected an array");
        return OTAML_ERR_PARSE;
    }
    size_t n = 0;
    for (int i = tk + 1; i < (int)doc->tok[tk].next; i = doc->tok[i].next) {
        if (++n > OTAML_MAX_KEYS || doc->tok[i].type != OTAML_JSON_OBJECT) {
            OTAML_LOGW(TAG, "keys: expected 1 to %d objects {key_id, public_key}", OTAML_MAX_KEYS);
            return OTAML_ERR_PARSE;
        }
        OTAML_RETURN_IF_ERROR(prv_key(doc, i, out));
    }
    if (n == 0) {
        OTAML_LOGW(TAG, "keys: expected at least one key");
        return OTAML_ERR_PARSE;
    }
    return OTAML_OK;
}

otaml_status_t otaml_keyset_parse(const uint8_t *body, size_t len, otaml_keyset_t *out)
{
    memset(out, 0, sizeof(*out));
    if (len > OTAML_MAX_KEYSET_BYTES) return OTAML_ERR_TOO_LARGE;
    otaml_json_t *doc = malloc(sizeof(*doc));
    if (doc == NULL) return OTAML_ERR_NO_MEM;
    otaml_status_t st = otaml_json_parse(doc, body, len);
    if (st != OTAML_OK) {
        OTAML_LOGW(TAG, "key set is not strict JSON: %s", doc->error ? doc->error : otaml_status_to_str(st));
        st = OTAML_ERR_PARSE;
    } else {
        st = prv_fields(doc, out);
    }
    free(doc);
    if (st != OTAML_OK) memset(out, 0, sizeof(*out));
    return st;
}

otaml_keyset_verdict_t otaml_keyset_verify(const otaml_keyring_t *trusted, const char *doc_b64, const char *sig_b64,
                                           const char *project, uint64_t current_version, otaml_keyset_t *out)
{
    size_t b64_len = strnlen(doc_b64, OTAML_MAX_KEYSET_B64 + 1);
    if (b64_len > OTAML_MAX_KEYSET_B64) return OTAML_KEYSET_TOO_LARGE;
    uint8_t *body = malloc(OTAML_MAX_KEYSET_B64 / 4 * 3);
    if (body == NULL) return OTAML_KEYSET_BAD_SIGNATURE;
    size_t len = 0;
    otaml_keyset_verdict_t v = OTAML_KEYSET_OK;
    otaml_keyset_t *set = malloc(sizeof(*set));
    if (set == NULL) {
        v = OTAML_KEYSET_BAD_SIGNATURE;
    } else if (otaml_base64_decode_strict(doc_b64, b64_len, body, OTAML_MAX_KEYSET_B64 / 4 * 3, &len) != OTAML_OK) {
        v = OTAML_KEYSET_BAD_SIGNATURE;
    } else if (len > OTAML_MAX_KEYSET_BYTES) {
        v = OTAML_KEYSET_TOO_LARGE;
    } else if (otaml_manifest_verify(trusted, body, len, sig_b64, NULL) != OTAML_OK) {
        v = OTAML_KEYSET_BAD_SIGNATURE;
    } else if (otaml_keyset_parse(body, len, set) != OTAML_OK) {
        v = OTAML_KEYSET_MALFORMED;
    } else if (strcmp(set->project, project) != 0) {
        v = OTAML_KEYSET_PROJECT_MISMATCH;
    } else if (set->version <= current_version) {
        v = OTAML_KEYSET_REPLAYED;
    } else if (out != NULL) {
        *out = *set;
    }
    free(set);
    free(body);
    return v;
}

otaml_status_t otaml_keyset_keyring(const otaml_keyset_t *set, otaml_keyring_t *ring)
{
    const char *pems[OTAML_MAX_KEYS];
    for (size_t i = 0; i < set->count && i < OTAML_MAX_KEYS; i++) pems[i] = set->pem[i];
    return otaml_keyring_init(ring, pems, set->count);
}
