/*
 * Desired-configuration documents: size cap, then signature, then strict parsing (otaml_json.c, the
 * rules of manifests/README.md), then the device and revision checks, so unsigned bytes never reach
 * the parser.
 */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "otaml_config.h"
#include "otaml_json.h"
#include "otaml_port.h"

static const char *TAG = "otaml_config";

typedef enum { PRV_INT, PRV_STR } prv_kind_t;

typedef struct {
    const char *name;
    prv_kind_t kind;
    int32_t low, high;   /* PRV_INT: the range */
    int32_t unset;       /* PRV_INT: the field's value when the server did not set it (PRV_STR: "") */
    size_t max_len;      /* PRV_STR: bytes at most */
    bool (*rule)(const char *text, size_t n); /* PRV_STR: the whole value's grammar */
    size_t offset;
} prv_property_t;

/* Sorted by name: otaml_config_format relies on it. Mirrored in server/otaml/fleet/config.py. */
static const prv_property_t PROPERTIES[] = {
    {"alert_threshold", PRV_INT, 0, 100, -1, 0, NULL, offsetof(otaml_config_t, alert_threshold)},
    {"ml_interval_ms", PRV_INT, 10, 3600000, 0, 0, NULL, offsetof(otaml_config_t, ml_interval_ms)},
    {"mqtt_enabled", PRV_INT, 0, 1, -1, 0, NULL, offsetof(otaml_config_t, mqtt_enabled)},
    {"mqtt_prefix", PRV_STR, 0, 0, 0, OTAML_CONFIG_MAX_MQTT_PREFIX, otaml_config_mqtt_prefix_ok,
     offsetof(otaml_config_t, mqtt_prefix)},
    {"mqtt_url", PRV_STR, 0, 0, 0, OTAML_CONFIG_MAX_MQTT_URL, otaml_config_mqtt_url_ok, offsetof(otaml_config_t, mqtt_url)},
};
#define N_PROPERTIES (sizeof(PROPERTIES) / sizeof(PROPERTIES[0]))

static int32_t *prv_field(otaml_config_t *cfg, const prv_property_t *p) { return (int32_t *)((uint8_t *)cfg + p->offset); }
static char *prv_text(otaml_config_t *cfg, const prv_property_t *p) { return (char *)cfg + p->offset; }

static bool prv_is_set(const otaml_config_t *cfg, const prv_property_t *p)
{
    if (p->kind == PRV_STR) return prv_text((otaml_config_t *)cfg, p)[0] != '\0';
    return *prv_field((otaml_config_t *)cfg, p) != p->unset;
}

void otaml_config_init(otaml_config_t *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    for (size_t i = 0; i < N_PROPERTIES; i++) {
        if (PROPERTIES[i].kind == PRV_INT) *prv_field(cfg, &PROPERTIES[i]) = PROPERTIES[i].unset;
    }
}

static const prv_property_t *prv_find(const char *name)
{
    for (size_t i = 0; i < N_PROPERTIES; i++) {
        if (strcmp(PROPERTIES[i].name, name) == 0) return &PROPERTIES[i];
    }
    return NULL;
}

static otaml_status_t prv_set(otaml_config_t *cfg, const prv_property_t *p, int64_t value)
{
    if (value < p->low || value > p->high) {
        OTAML_LOGE(TAG, "%s: expected an integer from %ld to %ld, got %lld", p->name, (long)p->low, (long)p->high,
                   (long long)value);
        return OTAML_ERR_PARSE;
    }
    *prv_field(cfg, p) = (int32_t)value;
    return OTAML_OK;
}

static otaml_status_t prv_set_text(otaml_config_t *cfg, const prv_property_t *p, const char *text, size_t n)
{
    if (n == 0 || n > p->max_len || !p->rule(text, n)) {
        OTAML_LOGE(TAG, "%s: expected 1 to %u bytes by its rule (manifests/README.md, \"Desired configuration\"), got %u bytes",
                   p->name, (unsigned)p->max_len, (unsigned)n);
        return OTAML_ERR_PARSE;
    }
    memcpy(prv_text(cfg, p), text, n);
    prv_text(cfg, p)[n] = '\0';
    return OTAML_OK;
}

static bool prv_alnum(char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
static bool prv_hex(char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); }

/* (mqtt|mqtts)://HOST(:PORT)?, refusing in this order: over 100 bytes, another scheme, an empty or
 * misspelt HOST (which also refuses user info, a path, a query and spaces: none of their characters is
 * in a HOST), a PORT that is empty, has a leading zero, more than 5 digits or is above 65535, and
 * anything after the PORT. */
bool otaml_config_mqtt_url_ok(const char *s, size_t n)
{
    size_t i;
    if (n > OTAML_CONFIG_MAX_MQTT_URL) return false;
    if (n >= 7 && memcmp(s, "mqtt://", 7) == 0) i = 7;
    else if (n >= 8 && memcmp(s, "mqtts://", 8) == 0) i = 8;
    else return false;
    if (i < n && s[i] == '[') {
        size_t start = ++i;
        while (i < n && (prv_hex(s[i]) || s[i] == ':' || s[i] == '.')) i++;
        if (i == start || i >= n || s[i] != ']') return false;
        i++;
    } else {
        if (i >= n || !prv_alnum(s[i])) return false;
        while (i < n && (prv_alnum(s[i]) || s[i] == '.' || s[i] == '-')) i++;
    }
    if (i == n) return true;
    if (s[i] != ':') return false;
    size_t start = ++i;
    long port = 0;
    while (i < n && s[i] >= '0' && s[i] <= '9' && i - start < 5) port = port * 10 + (s[i++] - '0');
    return i == n && i > start && s[start] != '0' && port <= 65535;
}

bool otaml_config_mqtt_prefix_ok(const char *s, size_t n)
{
    if (n == 0 || n > OTAML_CONFIG_MAX_MQTT_PREFIX) return false;
    size_t level = 0; /* bytes in the current topic level */
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '/') {
            if (level == 0) return false;
            level = 0;
        } else if (prv_alnum(s[i]) || s[i] == '.' || s[i] == '_' || s[i] == '-') {
            level++;
        } else {
            return false;
        }
    }
    return level > 0;
}

static bool prv_device_id_char(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '.' || c == '_' ||
           c == ':' || c == '-';
}

/* Strict JSON, then the document's fields (manifests/README.md, "Config document fields"). */
static otaml_status_t prv_parse(const otaml_json_t *doc, const char *device_id, uint64_t applied_revision,
                                otaml_config_t *out)
{
    char dev[65];
    size_t n = 0;
    int64_t revision = 0;
    int props = otaml_json_get(doc, 0, "properties");
    if (otaml_json_string(doc, otaml_json_get(doc, 0, "device_id"), dev, sizeof(dev), &n) != OTAML_OK || n == 0 ||
        otaml_json_integer(doc, otaml_json_get(doc, 0, "revision"), &revision) != OTAML_OK || revision < 1 ||
        props < 0 || doc->tok[props].type != OTAML_JSON_OBJECT) {
        OTAML_LOGE(TAG, "config document lacks device_id, revision or properties, or one has the wrong type");
        return OTAML_ERR_PARSE;
    }
    for (size_t i = 0; i < n; i++) {
        if (!prv_device_id_char(dev[i])) {
            OTAML_LOGE(TAG, "config document: device_id is not [A-Za-z0-9._:-]{1,64}");
            return OTAML_ERR_PARSE;
        }
    }
    if (strcmp(dev, device_id) != 0) return OTAML_ERR_WRONG_DEVICE;
    if ((uint64_t)revision <= applied_revision) return OTAML_ERR_STALE;
    out->revision = (uint64_t)revision;
    for (int k = otaml_json_first_member(doc, props); k >= 0; k = otaml_json_next_member(doc, props, k)) {
        for (size_t i = 0; i < N_PROPERTIES; i++) {
            if (!otaml_json_string_is(doc, k, PROPERTIES[i].name)) continue;
            if (PROPERTIES[i].kind == PRV_STR) {
                char text[OTAML_CONFIG_MAX_MQTT_URL + 2]; /* the longest string property, and one byte to spot longer */
                size_t len = 0;
                otaml_status_t st = otaml_json_string(doc, k + 1, text, sizeof(text), &len);
                if (st == OTAML_ERR_TOO_LARGE) len = sizeof(text); /* over every limit: prv_set_text refuses it */
                else if (st != OTAML_OK) {
                    OTAML_LOGE(TAG, "%s: expected a string", PROPERTIES[i].name);
                    return OTAML_ERR_PARSE;
                }
                OTAML_RETURN_IF_ERROR(prv_set_text(out, &PROPERTIES[i], text, len));
                continue;
            }
            int64_t value;
            if (otaml_json_integer(doc, k + 1, &value) != OTAML_OK) {
                OTAML_LOGE(TAG, "%s: expected an integer literal", PROPERTIES[i].name);
                return OTAML_ERR_PARSE;
            }
            OTAML_RETURN_IF_ERROR(prv_set(out, &PROPERTIES[i], value));
        }
        /* a name in no row is a newer server's property: ignored, whatever its value */
    }
    return OTAML_OK;
}

otaml_status_t otaml_config_parse(const uint8_t *body, size_t len, const char *device_id, uint64_t applied_revision,
                                  otaml_config_t *out)
{
    otaml_config_init(out);
    if (len > OTAML_MAX_CONFIG_BYTES) return OTAML_ERR_TOO_LARGE;
    otaml_json_t *doc = malloc(sizeof(*doc));
    if (doc == NULL) return OTAML_ERR_NO_MEM;
    otaml_status_t st = otaml_json_parse(doc, body, len);
    if (st != OTAML_OK) {
        OTAML_LOGE(TAG, "config document is not strict JSON: %s at byte %u", doc->error ? doc->error : "?",
                   (unsigned)doc->error_at);
        st = OTAML_ERR_PARSE;
    } else {
        st = prv_parse(doc, device_id, applied_revision, out);
    }
    free(doc);
    if (st != OTAML_OK) otaml_config_init(out);
    return st;
}

otaml_status_t otaml_config_verify(const otaml_keyring_t *ring, const char *doc_b64, const char *sig_b64,
                                   const char *device_id, uint64_t applied_revision, otaml_config_t *out)
{
    otaml_config_init(out);
    if (ring == NULL || doc_b64 == NULL || sig_b64 == NULL || device_id == NULL) return OTAML_ERR_INVALID_ARG;
    size_t b64_len = strnlen(doc_b64, OTAML_MAX_CONFIG_B64 + 1);
    if (b64_len > OTAML_MAX_CONFIG_B64) return OTAML_ERR_TOO_LARGE;
    /* Room for every header that passed the length check, so a document just over the limit decodes
     * and is refused as too large (not as a signature error). */
    uint8_t body[(OTAML_MAX_CONFIG_B64 / 4) * 3];
    size_t len = 0;
    if (otaml_base64_decode_strict(doc_b64, b64_len, body, sizeof(body), &len) != OTAML_OK) return OTAML_ERR_SIGNATURE;
    if (len > OTAML_MAX_CONFIG_BYTES) return OTAML_ERR_TOO_LARGE;
    otaml_status_t st = otaml_manifest_verify(ring, body, len, sig_b64, NULL);
    if (st != OTAML_OK) return st == OTAML_ERR_NO_MEM ? st : OTAML_ERR_SIGNATURE;
    return otaml_config_parse(body, len, device_id, applied_revision, out);
}

otaml_status_t otaml_config_format(const otaml_config_t *cfg, char *buf, size_t size)
{
    size_t pos = 0;
    if (size == 0) return OTAML_ERR_TOO_LARGE;
    buf[0] = '\0';
    for (size_t i = 0; i < N_PROPERTIES; i++) {
        if (!prv_is_set(cfg, &PROPERTIES[i])) continue;
        int n = PROPERTIES[i].kind == PRV_STR
                    ? snprintf(buf + pos, size - pos, "%s%s=%s", pos ? "," : "", PROPERTIES[i].name,
                               prv_text((otaml_config_t *)cfg, &PROPERTIES[i]))
                    : snprintf(buf + pos, size - pos, "%s%s=%ld", pos ? "," : "", PROPERTIES[i].name,
                               (long)*prv_field((otaml_config_t *)cfg, &PROPERTIES[i]));
        if (n < 0 || (size_t)n >= size - pos) return OTAML_ERR_TOO_LARGE;
        pos += (size_t)n;
    }
    return OTAML_OK;
}

otaml_status_t otaml_config_parse_applied(const char *text, otaml_config_t *cfg)
{
    uint64_t revision = cfg->revision;
    otaml_config_init(cfg);
    cfg->revision = revision;
    const char *p = text;
    while (*p) {
        const char *eq = strchr(p, '=');
        if (eq == NULL || eq == p || (size_t)(eq - p) >= 32) return OTAML_ERR_PARSE;
        char name[32];
        memcpy(name, p, (size_t)(eq - p));
        name[eq - p] = '\0';
        const char *value = eq + 1, *end = strchr(value, ',');
        if (end == NULL) end = value + strlen(value);
        const prv_property_t *prop = prv_find(name);
        if (prop == NULL) {
            OTAML_LOGW(TAG, "ignoring unknown property %s (newer server?)", name);
        } else if (prop->kind == PRV_STR) {
            if (prv_set_text(cfg, prop, value, (size_t)(end - value)) != OTAML_OK) return OTAML_ERR_PARSE;
        } else {
            char *stop;
            long v = strtol(value, &stop, 10);
            if (stop == value || stop != end || prv_set(cfg, prop, v) != OTAML_OK) return OTAML_ERR_PARSE;
        }
        p = *end ? end + 1 : end;
    }
    return OTAML_OK;
}
