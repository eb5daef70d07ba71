/*
 * Manifest verification and parsing. Order matters (manifests/README.md): the size cap and the
 * signature come before any parsing, so a hostile server cannot reach cJSON with unsigned bytes.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include <cJSON.h>
#include <mbedtls/base64.h>
#include <mbedtls/pk.h>

#include "otaml_manifest.h"
#include "otaml_mbedtls_compat.h"
#include "otaml_port.h"
#include "otaml_protocol.h"

static const char *TAG = "otaml_manifest";

#define PEM_BEGIN "-----BEGIN PUBLIC KEY-----"
#define PEM_END "-----END PUBLIC KEY-----"

/* The key id hashes the DER inside the PEM armour: base64-decode the body, skipping line breaks. */
static otaml_status_t prv_key_id(const char *pem, char out[17])
{
    const char *begin = strstr(pem, PEM_BEGIN);
    const char *end = begin ? strstr(begin, PEM_END) : NULL;
    if (begin == NULL || end == NULL) return OTAML_ERR_PARSE;
    begin += strlen(PEM_BEGIN);

    char b64[256];
    size_t n = 0;
    for (const char *p = begin; p < end; p++) {
        if (*p == '\n' || *p == '\r' || *p == ' ') continue;
        if (n + 1 >= sizeof(b64)) return OTAML_ERR_PARSE;
        b64[n++] = *p;
    }
    uint8_t der[192];
    size_t der_len = 0;
    if (mbedtls_base64_decode(der, sizeof(der), &der_len, (const unsigned char *)b64, n) != 0) {
        return OTAML_ERR_PARSE;
    }
    uint8_t digest[32];
    if (otaml_sha256(der, der_len, digest) != 0) return OTAML_ERR_PARSE;
    for (int i = 0; i < 8; i++) snprintf(out + 2 * i, 3, "%02x", digest[i]);
    return OTAML_OK;
}

otaml_status_t otaml_keyring_init(otaml_keyring_t *ring, const char *const *pems, size_t count)
{
    memset(ring, 0, sizeof(*ring));
    if (count == 0 || count > OTAML_MAX_KEYS) return OTAML_ERR_INVALID_ARG;
    for (size_t i = 0; i < count; i++) {
        mbedtls_pk_context pk;
        mbedtls_pk_init(&pk);
        int rc = mbedtls_pk_parse_public_key(&pk, (const unsigned char *)pems[i], strlen(pems[i]) + 1);
        bool is_p256 = rc == 0 && mbedtls_pk_can_do(&pk, MBEDTLS_PK_ECDSA);
        mbedtls_pk_free(&pk);
        if (!is_p256) {
            OTAML_LOGE(TAG, "pinned key %u is not an ECDSA P-256 public key PEM (mbedtls -0x%04x)", (unsigned)i,
                       (unsigned)-rc);
            return OTAML_ERR_PARSE;
        }
        OTAML_RETURN_IF_ERROR(prv_key_id(pems[i], ring->key_id[i]));
        ring->pem[i] = pems[i];
    }
    ring->count = count;
    return OTAML_OK;
}

otaml_status_t otaml_manifest_verify(const otaml_keyring_t *ring, const uint8_t *body, size_t len,
                                     const char *signature_b64, size_t *key_index)
{
    if (len > OTAML_MAX_MANIFEST_BYTES) return OTAML_ERR_TOO_LARGE;
    if (ring == NULL || body == NULL || signature_b64 == NULL) return OTAML_ERR_INVALID_ARG;

    uint8_t sig[80]; /* DER of a P-256 signature is at most 72 bytes */
    size_t sig_len = 0;
    size_t b64_len = strlen(signature_b64);
    if (b64_len == 0 || b64_len > OTAML_MAX_SIGNATURE_B64 ||
        mbedtls_base64_decode(sig, sizeof(sig), &sig_len, (const unsigned char *)signature_b64, b64_len) != 0 ||
        sig_len == 0) {
        OTAML_LOGW(TAG, "signature is not base64 of a DER ECDSA signature");
        return OTAML_ERR_SIGNATURE;
    }
    uint8_t digest[32];
    if (otaml_sha256(body, len, digest) != 0) return OTAML_ERR_SIGNATURE;

    for (size_t i = 0; i < ring->count; i++) {
        mbedtls_pk_context pk;
        mbedtls_pk_init(&pk);
        int rc = mbedtls_pk_parse_public_key(&pk, (const unsigned char *)ring->pem[i], strlen(ring->pem[i]) + 1);
        if (rc == 0) rc = mbedtls_pk_verify(&pk, MBEDTLS_MD_SHA256, digest, sizeof(digest), sig, sig_len);
        mbedtls_pk_free(&pk);
        if (rc == 0) {
            if (key_index) *key_index = i;
            return OTAML_OK;
        }
    }
    OTAML_LOGW(TAG, "signature does not verify with any of %u pinned keys", (unsigned)ring->count);
    return OTAML_ERR_SIGNATURE;
}

/* ---- parsing ---- */

static otaml_status_t prv_fail(const char *field, const char *why)
{
    OTAML_LOGW(TAG, "manifest field `%s`: %s", field, why);
    return OTAML_ERR_PARSE;
}

static otaml_status_t prv_string(const cJSON *root, const char *name, char *out, size_t size, size_t min_len)
{
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(root, name);
    if (!cJSON_IsString(item) || item->valuestring == NULL) return prv_fail(name, "expected a string");
    size_t n = strlen(item->valuestring);
    if (n < min_len || n >= size) return prv_fail(name, "length out of range");
    memcpy(out, item->valuestring, n + 1);
    return OTAML_OK;
}

static otaml_status_t prv_uint(const cJSON *root, const char *name, double min, double max, uint64_t *out)
{
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(root, name);
    if (!cJSON_IsNumber(item)) return prv_fail(name, "expected a number");
    double d = item->valuedouble;
    if (!(d >= min && d <= max) || floor(d) != d) return prv_fail(name, "expected an integer in range");
    *out = (uint64_t)d;
    return OTAML_OK;
}

static bool prv_is_hex(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) return false;
    }
    return s[n] == '\0';
}

static otaml_status_t prv_parse(const cJSON *root, otaml_manifest_t *m)
{
    if (!cJSON_IsObject(root)) return prv_fail("(root)", "expected a JSON object");

    const cJSON *version = cJSON_GetObjectItemCaseSensitive(root, "version");
    if (!cJSON_IsNumber(version)) return prv_fail("version", "expected a JSON number");
    m->legacy_version = version->valuedouble;

    OTAML_RETURN_IF_ERROR(prv_string(root, "file", m->file, sizeof(m->file), 8));
    if (strncmp(m->file, "http://", 7) != 0 && strncmp(m->file, "https://", 8) != 0) {
        return prv_fail("file", "expected an http(s) URL");
    }
    OTAML_RETURN_IF_ERROR(prv_string(root, "semver", m->semver, sizeof(m->semver), 1));
    if (!otaml_version_parse(m->semver, &m->version)) return prv_fail("semver", "expected 1 to 3 numbers");

    char sha_hex[65];
    OTAML_RETURN_IF_ERROR(prv_string(root, "sha256", sha_hex, sizeof(sha_hex), 64));
    if (!prv_is_hex(sha_hex, 64)) return prv_fail("sha256", "expected 64 lowercase hex digits");
    for (int i = 0; i < 32; i++) {
        unsigned v;
        sscanf(sha_hex + 2 * i, "%2x", &v);
        m->sha256[i] = (uint8_t)v;
    }

    uint64_t u;
    OTAML_RETURN_IF_ERROR(prv_uint(root, "size", 1, 4294967295.0, &u));
    m->size = (uint32_t)u;
    OTAML_RETURN_IF_ERROR(prv_string(root, "project", m->project, sizeof(m->project), 1));
    OTAML_RETURN_IF_ERROR(prv_string(root, "chip", m->chip, sizeof(m->chip), 1));
    OTAML_RETURN_IF_ERROR(prv_uint(root, "secure_version", 0, 4294967295.0, &u));
    m->secure_version = (uint32_t)u;
    OTAML_RETURN_IF_ERROR(prv_string(root, "channel", m->channel, sizeof(m->channel), 1));
    OTAML_RETURN_IF_ERROR(prv_uint(root, "manifest_version", 1, 9007199254740992.0, &m->manifest_version));
    OTAML_RETURN_IF_ERROR(prv_uint(root, "issued_at", 0, 9007199254740992.0, &u));
    m->issued_at = (int64_t)u;
    OTAML_RETURN_IF_ERROR(prv_uint(root, "expires", 0, 9007199254740992.0, &u));
    m->expires = (int64_t)u;
    if (m->expires <= m->issued_at) return prv_fail("expires", "expected a time after issued_at");
    OTAML_RETURN_IF_ERROR(prv_string(root, "key_id", m->key_id, sizeof(m->key_id), 16));
    if (!prv_is_hex(m->key_id, 16)) return prv_fail("key_id", "expected 16 lowercase hex digits");
    return OTAML_OK;
}

otaml_status_t otaml_manifest_parse(const uint8_t *body, size_t len, otaml_manifest_t *out)
{
    memset(out, 0, sizeof(*out));
    if (len > OTAML_MAX_MANIFEST_BYTES) return OTAML_ERR_TOO_LARGE;
    cJSON *root = cJSON_ParseWithLength((const char *)body, len);
    if (root == NULL) return prv_fail("(root)", "not JSON");
    otaml_status_t st = prv_parse(root, out);
    cJSON_Delete(root);
    if (st != OTAML_OK) memset(out, 0, sizeof(*out));
    return st;
}
