/*
 * Desired-configuration documents: size cap, then signature, then parsing, then the device and
 * revision checks, so unsigned bytes never reach cJSON.
 */
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>
#include <mbedtls/base64.h>

#include "otaml_config.h"
#include "otaml_port.h"

static const char *TAG = "otaml_config";

typedef struct {
    const char *name;
    int32_t low, high;
    int32_t unset; /* the field's value when the server did not set it */
    size_t offset;
} prv_property_t;

/* Sorted by name: otaml_config_format relies on it. Mirrored in server/otaml/fleet/config.py. */
static const prv_property_t PROPERTIES[] = {
    {"alert_threshold", 0, 100, -1, offsetof(otaml_config_t, alert_threshold)},
    {"ml_interval_ms", 10, 3600000, 0, offsetof(otaml_config_t, ml_interval_ms)},
};
#define N_PROPERTIES (sizeof(PROPERTIES) / sizeof(PROPERTIES[0]))

static int32_t *prv_field(otaml_config_t *cfg, const prv_property_t *p) { return (int32_t *)((uint8_t *)cfg + p->offset); }

static bool prv_is_set(const otaml_config_t *cfg, const prv_property_t *p)
{
    return *prv_field((otaml_config_t *)cfg, p) != p->unset;
}

void otaml_config_init(otaml_config_t *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    for (size_t i = 0; i < N_PROPERTIES; i++) *prv_field(cfg, &PROPERTIES[i]) = PROPERTIES[i].unset;
}

static const prv_property_t *prv_find(const char *name)
{
    for (size_t i = 0; i < N_PROPERTIES; i++) {
        if (strcmp(PROPERTIES[i].name, name) == 0) return &PROPERTIES[i];
    }
    return NULL;
}

static otaml_status_t prv_set(otaml_config_t *cfg, const char *name, double value)
{
    const prv_property_t *p = prv_find(name);
    if (p == NULL) {
        OTAML_LOGW(TAG, "ignoring unknown property %s (newer server?)", name);
        return OTAML_OK;
    }
    if (value != floor(value) || value < p->low || value > p->high) {
        OTAML_LOGE(TAG, "%s: expected an integer from %ld to %ld, got %g", name, (long)p->low, (long)p->high, value);
        return OTAML_ERR_PARSE;
    }
    *prv_field(cfg, p) = (int32_t)value;
    return OTAML_OK;
}

otaml_status_t otaml_config_verify(const otaml_keyring_t *ring, const char *doc_b64, const char *sig_b64,
                                   const char *device_id, uint64_t applied_revision, otaml_config_t *out)
{
    otaml_config_init(out);
    if (ring == NULL || doc_b64 == NULL || sig_b64 == NULL || device_id == NULL) return OTAML_ERR_INVALID_ARG;
    size_t b64_len = strlen(doc_b64);
    if (b64_len > OTAML_MAX_CONFIG_B64) return OTAML_ERR_TOO_LARGE;
    uint8_t body[OTAML_MAX_CONFIG_BYTES + 4];
    size_t len = 0;
    if (mbedtls_base64_decode(body, sizeof(body) - 1, &len, (const unsigned char *)doc_b64, b64_len) != 0) {
        return OTAML_ERR_SIGNATURE;
    }
    if (len > OTAML_MAX_CONFIG_BYTES) return OTAML_ERR_TOO_LARGE;
    otaml_status_t st = otaml_manifest_verify(ring, body, len, sig_b64, NULL);
    if (st != OTAML_OK) return st == OTAML_ERR_NO_MEM ? st : OTAML_ERR_SIGNATURE;

    cJSON *root = cJSON_ParseWithLength((const char *)body, len);
    if (root == NULL) return OTAML_ERR_PARSE;
    st = OTAML_ERR_PARSE;
    const cJSON *dev = cJSON_GetObjectItemCaseSensitive(root, "device_id");
    const cJSON *rev = cJSON_GetObjectItemCaseSensitive(root, "revision");
    const cJSON *props = cJSON_GetObjectItemCaseSensitive(root, "properties");
    if (!cJSON_IsString(dev) || !cJSON_IsNumber(rev) || !cJSON_IsObject(props) || rev->valuedouble < 1 ||
        rev->valuedouble > 9007199254740991.0 || rev->valuedouble != floor(rev->valuedouble)) {
        OTAML_LOGE(TAG, "config document lacks device_id, revision or properties");
        goto done;
    }
    if (strcmp(dev->valuestring, device_id) != 0) {
        st = OTAML_ERR_WRONG_DEVICE;
        goto done;
    }
    out->revision = (uint64_t)rev->valuedouble;
    if (out->revision <= applied_revision) {
        st = OTAML_ERR_STALE;
        goto done;
    }
    const cJSON *item;
    cJSON_ArrayForEach(item, props)
    {
        if (!cJSON_IsNumber(item) || prv_set(out, item->string, item->valuedouble) != OTAML_OK) goto done;
    }
    st = OTAML_OK;
done:
    cJSON_Delete(root);
    if (st != OTAML_OK) otaml_config_init(out);
    return st;
}

otaml_status_t otaml_config_format(const otaml_config_t *cfg, char *buf, size_t size)
{
    size_t pos = 0;
    if (size == 0) return OTAML_ERR_TOO_LARGE;
    buf[0] = '\0';
    for (size_t i = 0; i < N_PROPERTIES; i++) {
        if (!prv_is_set(cfg, &PROPERTIES[i])) continue;
        int n = snprintf(buf + pos, size - pos, "%s%s=%ld", pos ? "," : "", PROPERTIES[i].name,
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
        char *end;
        long v = strtol(eq + 1, &end, 10);
        if (end == eq + 1 || (*end != ',' && *end != '\0')) return OTAML_ERR_PARSE;
        if (prv_set(cfg, name, (double)v) != OTAML_OK) return OTAML_ERR_PARSE;
        p = *end ? end + 1 : end;
    }
    return OTAML_OK;
}
