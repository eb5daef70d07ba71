/*
 * Manifest verification and parsing. Order matters (manifests/README.md): the size cap and the
 * signature come before any parsing, so a hostile server cannot reach the parser with unsigned bytes;
 * the parser is the strict one (otaml_json.c) the server's reader mirrors.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mbedtls/base64.h>
#include <mbedtls/pk.h>

#include "otaml_json.h"
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

otaml_status_t otaml_base64_decode_strict(const char *b64, size_t b64_len, uint8_t *out, size_t cap, size_t *out_len)
{
    *out_len = 0;
    if (b64_len == 0 || b64_len % 4 != 0) return OTAML_ERR_PARSE;
    for (size_t i = 0; i < b64_len; i++) {
        char c = b64[i];
        bool alpha = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' || c == '/';
        /* '=' only as the last character, or the last two */
        bool pad = c == '=' && (i == b64_len - 1 || (i == b64_len - 2 && b64[b64_len - 1] == '='));
        if (!alpha && !pad) return OTAML_ERR_PARSE;
    }
    if ((b64_len / 4) * 3 > cap) return OTAML_ERR_TOO_LARGE;
    if (mbedtls_base64_decode(out, cap, out_len, (const unsigned char *)b64, b64_len) != 0) return OTAML_ERR_PARSE;
    return OTAML_OK;
}

/* A minimal, non-negative DER INTEGER of 1..33 bytes at der[at]; the offset after it, or 0. */
static size_t prv_der_integer(const uint8_t *der, size_t len, size_t at)
{
    if (at + 2 > len || der[at] != 0x02 || der[at + 1] < 1 || der[at + 1] > 33) return 0;
    size_t n = der[at + 1];
    const uint8_t *v = der + at + 2;
    if (at + 2 + n > len || (v[0] & 0x80) || (n > 1 && v[0] == 0 && !(v[1] & 0x80))) return 0;
    return at + 2 + n;
}

/* S1: one encoding per signature, as OpenSSL (the server) requires. mbedTLS alone would also take
 * BER-ish spellings (padded integers, trailing bytes), so server and device would disagree. */
static bool prv_der_is_canonical(const uint8_t *der, size_t len)
{
    if (len < 8 || der[0] != 0x30 || der[1] >= 0x80 || der[1] != len - 2) return false;
    size_t after_r = prv_der_integer(der, len, 2);
    return after_r != 0 && prv_der_integer(der, len, after_r) == len;
}

otaml_status_t otaml_manifest_verify(const otaml_keyring_t *ring, const uint8_t *body, size_t len,
                                     const char *signature_b64, size_t *key_index)
{
    if (len > OTAML_MAX_MANIFEST_BYTES) return OTAML_ERR_TOO_LARGE;
    if (ring == NULL || (body == NULL && len > 0) || signature_b64 == NULL) return OTAML_ERR_INVALID_ARG;

    uint8_t sig[(OTAML_MAX_SIGNATURE_B64 / 4) * 3];
    size_t sig_len = 0;
    size_t b64_len = strnlen(signature_b64, OTAML_MAX_SIGNATURE_B64 + 1);
    if (b64_len > OTAML_MAX_SIGNATURE_B64 ||
        otaml_base64_decode_strict(signature_b64, b64_len, sig, sizeof(sig), &sig_len) != OTAML_OK ||
        !prv_der_is_canonical(sig, sig_len)) {
        OTAML_LOGW(TAG, "signature is not strict base64 of a canonical DER ECDSA signature");
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

/* ---- parsing: the field rules of manifests/README.md, "Manifest fields" ---- */

static otaml_status_t prv_fail(const char *field, const char *why)
{
    OTAML_LOGW(TAG, "manifest field `%s`: %s", field, why);
    return OTAML_ERR_PARSE;
}

static bool prv_in(char c, const char *set) { return c != '\0' && strchr(set, c) != NULL; }
static bool prv_alnum(char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
static bool prv_hex(char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); }
static bool prv_lower_hex(char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); }

/* (http|https)://HOST(:PORT)?/PATH, the grammar of the README (server: rules.FILE_URL). */
static bool prv_is_file_url(const char *s)
{
    if (strncmp(s, "http://", 7) == 0) s += 7;
    else if (strncmp(s, "https://", 8) == 0) s += 8;
    else return false;
    if (*s == '[') {
        const char *h = ++s;
        while (prv_hex(*s) || *s == ':' || *s == '.') s++;
        if (s == h || *s++ != ']') return false;
    } else {
        if (!prv_alnum(*s)) return false;
        while (prv_alnum(*s) || *s == '.' || *s == '-') s++;
    }
    if (*s == ':') {
        const char *p = ++s;
        while (*s >= '0' && *s <= '9') s++;
        if (s == p || s - p > 5) return false;
    }
    if (*s++ != '/') return false;
    for (; *s; s++) {
        if (*s == '%') {
            if (!prv_hex(s[1]) || !prv_hex(s[2])) return false;
            s += 2;
        } else if (!prv_alnum(*s) && !prv_in(*s, "._~!$&'()*+,;=:@/?-")) {
            return false;
        }
    }
    return true;
}

/* Every character of s passes ok(), or is in extra; length within [min_len, max_len]. */
static bool prv_charset(const char *s, size_t min_len, size_t max_len, bool (*ok)(char), const char *extra)
{
    size_t n = 0;
    for (; s[n]; n++) {
        if (!ok(s[n]) && !prv_in(s[n], extra)) return false;
    }
    return n >= min_len && n <= max_len;
}

static bool prv_lower_alnum(char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z'); }

static otaml_status_t prv_string(const otaml_json_t *doc, const char *name, char *out, size_t size)
{
    int t = otaml_json_get(doc, 0, name);
    if (t < 0) return prv_fail(name, "missing");
    otaml_status_t st = otaml_json_string(doc, t, out, size, NULL);
    if (st == OTAML_ERR_TOO_LARGE) return prv_fail(name, "too long");
    if (st != OTAML_OK) return prv_fail(name, "expected a string");
    return OTAML_OK;
}

static otaml_status_t prv_integer(const otaml_json_t *doc, const char *name, int64_t min, int64_t max, int64_t *out)
{
    int t = otaml_json_get(doc, 0, name);
    if (t < 0) return prv_fail(name, "missing");
    if (otaml_json_integer(doc, t, out) != OTAML_OK) return prv_fail(name, "expected an integer literal");
    if (*out < min || *out > max) return prv_fail(name, "integer out of range");
    return OTAML_OK;
}

/* `version` equals MAJOR.MINOR of semver as decimals: the same integer part, and the same fraction
 * digits once trailing zeros are dropped (1.10 == 1.1; 1 == 1.0). */
static bool prv_version_matches(const otaml_json_t *doc, int t, const char *semver)
{
    const char *lit = (const char *)doc->src + doc->tok[t].start;
    size_t n = doc->tok[t].len, i = 0;
    if (lit[0] == '-') return false;
    while (i < n && lit[i] != '.') i++;
    size_t major_len = strcspn(semver, ".");
    if (i != major_len || memcmp(lit, semver, i) != 0) return false;
    const char *frac = i < n ? lit + i + 1 : "";
    size_t frac_len = i < n ? n - i - 1 : 0;
    const char *minor = semver[major_len] == '.' ? semver + major_len + 1 : "";
    size_t minor_len = strcspn(minor, ".");
    while (frac_len > 0 && frac[frac_len - 1] == '0') frac_len--;
    while (minor_len > 0 && minor[minor_len - 1] == '0') minor_len--;
    return frac_len == minor_len && memcmp(frac, minor, frac_len) == 0;
}

static otaml_status_t prv_parse(const otaml_json_t *doc, otaml_manifest_t *m)
{
    int64_t v;
    OTAML_RETURN_IF_ERROR(prv_string(doc, "semver", m->semver, sizeof(m->semver)));
    if (!otaml_version_parse(m->semver, &m->version)) return prv_fail("semver", "expected 1 to 3 numbers");

    int version = otaml_json_get(doc, 0, "version");
    if (version < 0 || doc->tok[version].type != OTAML_JSON_NUMBER) return prv_fail("version", "expected a JSON number");
    if (!prv_version_matches(doc, version, m->semver)) return prv_fail("version", "expected MAJOR.MINOR of semver");
    char number[OTAML_JSON_MAX_NUMBER_CHARS + 1];
    memcpy(number, doc->src + doc->tok[version].start, doc->tok[version].len);
    number[doc->tok[version].len] = '\0';
    m->legacy_version = strtod(number, NULL);

    OTAML_RETURN_IF_ERROR(prv_string(doc, "file", m->file, sizeof(m->file)));
    if (!prv_is_file_url(m->file)) return prv_fail("file", "expected an http(s) URL by the README's grammar");

    char sha_hex[65];
    OTAML_RETURN_IF_ERROR(prv_string(doc, "sha256", sha_hex, sizeof(sha_hex)));
    if (!prv_charset(sha_hex, 64, 64, prv_lower_hex, "")) return prv_fail("sha256", "expected 64 lowercase hex digits");
    for (int i = 0; i < 32; i++) {
        unsigned byte;
        sscanf(sha_hex + 2 * i, "%2x", &byte);
        m->sha256[i] = (uint8_t)byte;
    }
    OTAML_RETURN_IF_ERROR(prv_integer(doc, "size", 1, UINT32_MAX, &v));
    m->size = (uint32_t)v;
    OTAML_RETURN_IF_ERROR(prv_string(doc, "project", m->project, sizeof(m->project)));
    if (!prv_charset(m->project, 1, 31, prv_alnum, "._+-")) return prv_fail("project", "expected 1 to 31 of A-Za-z0-9._+-");
    OTAML_RETURN_IF_ERROR(prv_string(doc, "chip", m->chip, sizeof(m->chip)));
    if (!prv_charset(m->chip, 1, 15, prv_lower_alnum, "")) return prv_fail("chip", "expected 1 to 15 of a-z0-9");
    OTAML_RETURN_IF_ERROR(prv_integer(doc, "secure_version", 0, UINT32_MAX, &v));
    m->secure_version = (uint32_t)v;
    OTAML_RETURN_IF_ERROR(prv_string(doc, "channel", m->channel, sizeof(m->channel)));
    if (!prv_lower_alnum(m->channel[0]) || !prv_charset(m->channel + 1, 0, 31, prv_lower_alnum, "._-")) {
        return prv_fail("channel", "expected [a-z0-9][a-z0-9._-]{0,31}");
    }
    OTAML_RETURN_IF_ERROR(prv_integer(doc, "manifest_version", 1, OTAML_JSON_MAX_SAFE_INTEGER, &v));
    m->manifest_version = (uint64_t)v;
    OTAML_RETURN_IF_ERROR(prv_integer(doc, "issued_at", 0, OTAML_JSON_MAX_SAFE_INTEGER, &m->issued_at));
    OTAML_RETURN_IF_ERROR(prv_integer(doc, "expires", 0, OTAML_JSON_MAX_SAFE_INTEGER, &m->expires));
    if (m->expires <= m->issued_at) return prv_fail("expires", "expected a time after issued_at");
    OTAML_RETURN_IF_ERROR(prv_string(doc, "key_id", m->key_id, sizeof(m->key_id)));
    if (!prv_charset(m->key_id, 16, 16, prv_lower_hex, "")) return prv_fail("key_id", "expected 16 lowercase hex digits");
    return OTAML_OK;
}

otaml_status_t otaml_manifest_parse(const uint8_t *body, size_t len, otaml_manifest_t *out)
{
    memset(out, 0, sizeof(*out));
    if (len > OTAML_MAX_MANIFEST_BYTES) return OTAML_ERR_TOO_LARGE;
    otaml_json_t *doc = malloc(sizeof(*doc));
    if (doc == NULL) return OTAML_ERR_NO_MEM;
    otaml_status_t st = otaml_json_parse(doc, body, len);
    if (st != OTAML_OK) {
        OTAML_LOGW(TAG, "manifest is not strict JSON: %s at byte %u", doc->error ? doc->error : "?", (unsigned)doc->error_at);
        st = OTAML_ERR_PARSE;
    } else {
        st = prv_parse(doc, out);
    }
    free(doc);
    if (st != OTAML_OK) memset(out, 0, sizeof(*out));
    return st;
}
