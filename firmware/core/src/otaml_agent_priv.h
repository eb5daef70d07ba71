/*
 * What the agent's two rooms share: otaml_agent.c (events, check-ins, poll, install) and otaml_gate.c
 * (the rollback gate at boot). Internal to the core; applications use otaml_agent.h.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "otaml_agent.h"

/* A self-test or rollback detail as it is stored (inst_det, ob_det) and reported: NVS-safe and
 * within the event schema's 256 characters. */
#define OTAML_DETAIL_MAX 160

void otaml_agent_store_str_or_empty(const char *key, char *buf, size_t size);
uint64_t otaml_agent_store_u64_or_zero(const char *key);

/**
 * POST one event; logs a failure.
 * @return OTAML_OK when the server took it (2xx); OTAML_ERR_TRANSPORT when nothing (or a 5xx, 429)
 *         answered: try later; OTAML_ERR_HTTP_STATUS when it refused it (4xx); OTAML_ERR_NO_MEM.
 */
otaml_status_t otaml_agent_post_event(otaml_agent_t *a, otaml_event_t kind, const char *version,
                                      otaml_reason_t reason, const char *detail);
/** Queue one event that must survive a reboot (replaces a queued one); sent by otaml_agent_outbox_flush. */
void otaml_agent_outbox_put(otaml_agent_t *a, otaml_event_t kind, const char *version, otaml_reason_t reason,
                            const char *detail);
/** Send the queued event, if any. @return OTAML_OK (sent, or nothing queued), else as otaml_agent_post_event. */
otaml_status_t otaml_agent_outbox_flush(otaml_agent_t *a);

/** Check-in request headers (manifests/README.md), owned by the struct. */
typedef struct {
    otaml_header_t h[24];
    size_t n;
    char auth[160];
    char mv[24];
    char sv[12];
    char cfg_rev[24];
    char ks_ver[24];
    char rssi[8];
    char heap[12];
    char min_heap[12];
    char uptime[24];
} otaml_checkin_t;

void otaml_agent_checkin_headers(otaml_agent_t *a, otaml_checkin_t *c, bool with_etag);

/** Load the key set stored in NVS (if any, and newer than the built-in one) into agent->ring. */
void otaml_agent_keyset_load(otaml_agent_t *a);
/** Apply a key set from a poll answer (X-Otaml-Keyset), after the device's checks (otaml_keyset.h). */
void otaml_agent_keyset_take(otaml_agent_t *a, const otaml_http_response_t *resp);

/** A token as the protocol spells one: 16 to 64 characters of A-Z a-z 0-9 - _. */
bool otaml_token_valid(const char *token);

/**
 * Claim a device token with the fleet claim token (POST /api/claim), when the device has none.
 * @return OTAML_OK (claimed, or a token was there), OTAML_ERR_TRANSPORT (ask again later),
 *         OTAML_ERR_HTTP_STATUS (refused: expired or used-up claim token, id taken), OTAML_ERR_INVALID_ARG
 *         (no usable claim token), OTAML_ERR_IO, OTAML_ERR_NO_MEM.
 */
otaml_status_t otaml_agent_claim(otaml_agent_t *a);

/** The token a request authenticates with: a rotated one being tried, else the device token. */
const char *otaml_agent_auth_token(const otaml_agent_t *a);

/**
 * Token rotation (manifests/README.md, "Device tokens"), after a check-in the otaml server answered
 * (from_server: X-Otaml-Poll-Interval present). A rotated token being tried becomes the device token
 * once the server accepted it (any status but 401); a 401 drops it and the old token is used again.
 * A new token the server hands over (X-Otaml-New-Token) is stored first (token_nx), then tried.
 * @return true when the check-in was refused only because a rotated token was tried: ask again.
 */
bool otaml_agent_token_answer(otaml_agent_t *a, const otaml_http_response_t *resp, bool from_server);

/** A bounded response body; the sink refuses (and flags overflow) past cap. */
typedef struct {
    uint8_t *buf;
    size_t len, cap;
    bool overflow;
} otaml_buffer_t;

otaml_status_t otaml_agent_buffer_sink(void *ctx, const uint8_t *data, size_t len);

/** The manifest's signature: the response's X-Otaml-Signature, else firmware.json.sig beside it
 * (a static host); "" when neither is there. */
void otaml_agent_manifest_signature(otaml_agent_t *a, const otaml_http_response_t *resp, char *out, size_t size);

/** server_unreachable rollbacks of version counted so far (ur_ver/ur_count; 0 for another version). */
uint64_t otaml_agent_unreachable_count(const char *version);
