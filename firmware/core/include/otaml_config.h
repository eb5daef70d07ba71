/*
 * Desired configuration from the server: a small JSON document signed by the server's online key
 * (not the release key; see manifests/README.md, "Desired configuration"). The device pins that key
 * in a keyring of its own, applies a document only if it names this device and carries a higher
 * revision than the one applied, clamps nothing (an out-of-range value refuses the whole document)
 * and reports back what it runs.
 *
 * Security-critical: nothing is parsed before the signature verifies, and the properties it can set
 * are limited to the table in otaml_config.c, mirrored in server/otaml/fleet/config.py.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "otaml_manifest.h"
#include "otaml_protocol.h"
#include "otaml_status.h"

#ifdef __cplusplus
extern "C" {
#endif

#define OTAML_CONFIG_MAX_MQTT_URL 100   /* mqtt_url: (mqtt|mqtts)://HOST(:PORT)? */
#define OTAML_CONFIG_MAX_MQTT_PREFIX 48 /* mqtt_prefix: topic levels [A-Za-z0-9._-]+ joined by / */
#define OTAML_CONFIG_MAX_APPLIED 256    /* the X-Otaml-Config-Applied form of every property set */

typedef struct {
    uint64_t revision;       /* 0: nothing applied yet */
    int32_t ml_interval_ms;  /* milliseconds between inferences; 0 = not set (firmware default) */
    int32_t alert_threshold; /* percent confidence of a non-healthy class that raises an alert; -1 = not set */
    int32_t mqtt_enabled;    /* 1: publish predictions, 0: do not; -1 = not set (the build's default) */
    char mqtt_url[OTAML_CONFIG_MAX_MQTT_URL + 1];       /* broker; "" = not set */
    char mqtt_prefix[OTAML_CONFIG_MAX_MQTT_PREFIX + 1]; /* topic prefix; "" = not set */
} otaml_config_t;

/** An empty configuration (revision 0, nothing set). */
void otaml_config_init(otaml_config_t *cfg);

/**
 * Verify and parse a document from the X-Otaml-Config / X-Otaml-Config-Signature headers, in this
 * order (manifests/README.md, "Desired configuration").
 * @param applied_revision the revision this device runs; only a higher one is accepted.
 * @return OTAML_OK (out filled);
 *         OTAML_ERR_TOO_LARGE (the base64 over OTAML_MAX_CONFIG_B64 characters, or the document over
 *         OTAML_MAX_CONFIG_BYTES, checked before the signature);
 *         OTAML_ERR_SIGNATURE (the document or the signature not strict base64, the signature not
 *         canonical DER, or no key of the ring verifies it);
 *         then what otaml_config_parse() returns.
 */
otaml_status_t otaml_config_verify(const otaml_keyring_t *ring, const char *doc_b64, const char *sig_b64,
                                   const char *device_id, uint64_t applied_revision, otaml_config_t *out);

/**
 * The checks after the signature, on verified bytes (otaml_config_verify ends with it; the fuzz
 * harness calls it to reach the parser without the config key). Never call it on unverified bytes.
 * @return OTAML_OK (out filled);
 *         OTAML_ERR_PARSE (not strict JSON, J1-J6; `device_id` not a string [A-Za-z0-9._:-]{1,64},
 *         `revision` not an integer literal in 1..2^53-1, `properties` not an object; or a known
 *         property of the wrong type or outside its rule: an integer property not an integer literal
 *         within its range, mqtt_url not a string of at most 100 bytes spelled
 *         (mqtt|mqtts)://HOST(:PORT)? with PORT 1..65535, mqtt_prefix not a string of at most 48 bytes
 *         of topic levels [A-Za-z0-9._-]+ joined by single slashes: the whole document is refused);
 *         OTAML_ERR_WRONG_DEVICE (signed for another device: a replay across devices);
 *         OTAML_ERR_STALE (revision not above applied_revision: a replay of an older document);
 *         OTAML_ERR_TOO_LARGE (over OTAML_MAX_CONFIG_BYTES); OTAML_ERR_NO_MEM.
 */
otaml_status_t otaml_config_parse(const uint8_t *body, size_t len, const char *device_id, uint64_t applied_revision,
                                  otaml_config_t *out);

/** Whether text (n bytes, not NUL-terminated necessarily) obeys the mqtt_url rule: at most 100 bytes,
 * (mqtt|mqtts)://HOST(:PORT)? with HOST [A-Za-z0-9][A-Za-z0-9.-]* or \[[0-9A-Fa-f:.]+\] and PORT a
 * number 1..65535 without leading zeros. No user info (credentials live in NVS), no path. */
bool otaml_config_mqtt_url_ok(const char *text, size_t n);

/** Whether text obeys the mqtt_prefix rule: 1 to 48 bytes of topic levels [A-Za-z0-9._-]+ joined by
 * single slashes (so no MQTT wildcard, no `$` topic, no empty level). */
bool otaml_config_mqtt_prefix_ok(const char *text, size_t n);

/** "alert_threshold=80,ml_interval_ms=200,mqtt_url=mqtt://broker:1883": the properties set, sorted by
 * name (the X-Otaml-Config-Applied header, and how they are stored). String values never hold `,` or
 * `=` (their rules forbid them). @return OTAML_OK, OTAML_ERR_TOO_LARGE. */
otaml_status_t otaml_config_format(const otaml_config_t *cfg, char *buf, size_t size);

/** The inverse of otaml_config_format (revision left as is). @return OTAML_OK, OTAML_ERR_PARSE. */
otaml_status_t otaml_config_parse_applied(const char *text, otaml_config_t *cfg);

#ifdef __cplusplus
}
#endif
