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

typedef struct {
    uint64_t revision;       /* 0: nothing applied yet */
    int32_t ml_interval_ms;  /* milliseconds between inferences; 0 = not set (firmware default) */
    int32_t alert_threshold; /* percent confidence of a non-healthy class that raises an alert; -1 = not set */
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
 *         property not an integer literal within its range: the whole document is refused);
 *         OTAML_ERR_WRONG_DEVICE (signed for another device: a replay across devices);
 *         OTAML_ERR_STALE (revision not above applied_revision: a replay of an older document);
 *         OTAML_ERR_TOO_LARGE (over OTAML_MAX_CONFIG_BYTES); OTAML_ERR_NO_MEM.
 */
otaml_status_t otaml_config_parse(const uint8_t *body, size_t len, const char *device_id, uint64_t applied_revision,
                                  otaml_config_t *out);

/** "alert_threshold=80,ml_interval_ms=200": the properties set, sorted by name (the
 * X-Otaml-Config-Applied header, and how they are stored). @return OTAML_OK, OTAML_ERR_TOO_LARGE. */
otaml_status_t otaml_config_format(const otaml_config_t *cfg, char *buf, size_t size);

/** The inverse of otaml_config_format (revision left as is). @return OTAML_OK, OTAML_ERR_PARSE. */
otaml_status_t otaml_config_parse_applied(const char *text, otaml_config_t *cfg);

#ifdef __cplusplus
}
#endif
