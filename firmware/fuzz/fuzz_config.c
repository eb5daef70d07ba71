/*
 * libFuzzer harness for desired-config documents: the header as it arrives (size, strict base64,
 * signature) and the checks after the signature (otaml_config_parse, what otaml_config_verify runs once
 * the signature verified: strict parse, device, revision, property ranges and the MQTT string rules),
 * then the applied form's round trip. Input: DOC [0xFF 0xFE SIG].
 */
#include <string.h>

#include <mbedtls/base64.h>

#include "fuzz_common.h"
#include "otaml_config.h"

static void prv_check(otaml_status_t st, const otaml_config_t *cfg)
{
    if (st != OTAML_OK) { /* nothing half-applied */
        FUZZ_ASSERT(cfg->revision == 0 && cfg->ml_interval_ms == 0 && cfg->alert_threshold == -1);
        FUZZ_ASSERT(cfg->mqtt_enabled == -1 && cfg->mqtt_url[0] == '\0' && cfg->mqtt_prefix[0] == '\0');
        return;
    }
    FUZZ_ASSERT(cfg->revision > 5);
    FUZZ_ASSERT(cfg->ml_interval_ms == 0 || (cfg->ml_interval_ms >= 10 && cfg->ml_interval_ms <= 3600000));
    FUZZ_ASSERT(cfg->alert_threshold == -1 || (cfg->alert_threshold >= 0 && cfg->alert_threshold <= 100));
    FUZZ_ASSERT(cfg->mqtt_enabled >= -1 && cfg->mqtt_enabled <= 1);
    /* an accepted string obeys its rule whole (no NUL inside, no wildcard, no user info) */
    FUZZ_ASSERT(cfg->mqtt_url[0] == '\0' || otaml_config_mqtt_url_ok(cfg->mqtt_url, strlen(cfg->mqtt_url)));
    FUZZ_ASSERT(cfg->mqtt_prefix[0] == '\0' || otaml_config_mqtt_prefix_ok(cfg->mqtt_prefix, strlen(cfg->mqtt_prefix)));
    FUZZ_ASSERT(strchr(cfg->mqtt_prefix, '+') == NULL && strchr(cfg->mqtt_prefix, '#') == NULL);
    FUZZ_ASSERT(strchr(cfg->mqtt_url, '@') == NULL);
    /* what is stored and reported reads back as the same configuration */
    char applied[OTAML_CONFIG_MAX_APPLIED];
    FUZZ_ASSERT(otaml_config_format(cfg, applied, sizeof(applied)) == OTAML_OK);
    otaml_config_t back = {.revision = cfg->revision};
    FUZZ_ASSERT(otaml_config_parse_applied(applied, &back) == OTAML_OK);
    FUZZ_ASSERT(memcmp(&back, cfg, sizeof(back)) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char sig[256];
    size_t len = fuzz_split(data, size, sig);
    otaml_config_t cfg;

    /* The document as the server would send it: base64 of the bytes. */
    char b64[1500];
    size_t b64_len = 0;
    if (len <= 1024 && mbedtls_base64_encode((unsigned char *)b64, sizeof(b64), &b64_len, data, len) == 0) {
        prv_check(otaml_config_verify(fuzz_config_ring(), b64, sig, "dev-1", 5, &cfg), &cfg);
    }
    /* The input itself as the header value (base64 strictness, the length cap). */
    char *header = malloc(len + 1);
    memcpy(header, data, len);
    header[len] = '\0';
    prv_check(otaml_config_verify(fuzz_config_ring(), header, sig, "dev-1", 5, &cfg), &cfg);
    free(header);

    /* Past the signature, on an exact-size copy. */
    uint8_t *body = malloc(len ? len : 1);
    memcpy(body, data, len);
    prv_check(otaml_config_parse(body, len, "dev-1", 5, &cfg), &cfg);
    free(body);
    return 0;
}
