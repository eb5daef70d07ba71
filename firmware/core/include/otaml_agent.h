/*
 * The OTA agent: the rollback gate at boot and the poll cycle (check in, verify, download, install).
 * Runs in the OTA task; blocks only on its own I/O, never on the ML task.
 *
 * Persistent state (port store, NVS namespace "otaml"):
 *   mf_ver    manifest_version the running image was installed from (replay rule)
 *   mf_prev   mf_ver before the install in flight: restored if that install rolls back, so the
 *             device accepts its old channel manifest again instead of calling it a replay
 *   cfg_rev, cfg  desired-config revision applied and its properties ("name=value,...")
 *   failed_ver  version that last rolled back here (never taken again by this device)
 *   inst_ver  version installed and not yet confirmed; inst_why, inst_det: why it is being rolled
 *             back (set by the gate just before it marks the image invalid); inst_ur: ur_count of
 *             that version when it was installed (makes counting a rollback idempotent)
 *   ur_ver, ur_count  the version whose server_unreachable rollbacks are being counted, and how many
 *             so far: at most unreachable_retakes of them are forgiven (failed_ver stays unset)
 *   dl_sha, dl_off  the download in progress (image sha256, bytes safely written) for resumption
 *   ob_kind, ob_ver, ob_why, ob_det  one pending event that must survive a reboot (rolled_back)
 *   token     the device token; token_nx: a rotated token the server handed over, kept until a check-in
 *             with it succeeded (then it becomes token), so a power cut anywhere leaves a token that works
 *   claim, claim_new  a fleet claim token, and the device token this device chose and is claiming with it
 *   keyset    the key set in use (base64 of the document), once the server rotated the release keys
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "otaml_config.h"
#include "otaml_keyset.h"
#include "otaml_manifest.h"
#include "otaml_port.h"
#include "otaml_protocol.h"

#ifdef __cplusplus
extern "C" {
#endif

/** Self-test run on the first boot of a new image. Return false to roll back; say why in detail. */
typedef bool (*otaml_selftest_fn)(void *ctx, char *detail, size_t detail_size);
/** Applies a verified desired configuration (e.g. the ML task's interval). Called at init with the
 * stored configuration and after each newer document. Return false to refuse it (not stored). */
typedef bool (*otaml_config_apply_fn)(void *ctx, const otaml_config_t *config);
/** Adds check-in headers (e.g. ML counters). Returns how many of max it filled; values must stay
 * valid until the next call. */
typedef size_t (*otaml_checkin_extra_fn)(void *ctx, otaml_header_t *headers, size_t max);

typedef struct {
    const char *server_url; /* "https://ota.example.com" (no trailing slash) */
    const char *channel;    /* "stable" */
    const char *device_id;
    const char *token;       /* "" when the device has none yet and claims one with claim_token */
    const char *claim_token; /* a fleet claim token (release provision --claim); may be NULL */
    const char *project; /* must equal esp_app_desc_t.project_name of images */
    const char *chip;    /* "esp32", "esp32c3" */
    const otaml_keyring_t *keyring; /* the keys built in: key set `keyset_version` */
    uint64_t keyset_version;        /* version of the built-in key set (Kconfig OTAML_KEYSET_VERSION, 0) */
    otaml_selftest_fn selftest; /* may be NULL: reachability only */
    void *selftest_ctx;
    otaml_checkin_extra_fn checkin_extra; /* may be NULL */
    void *checkin_extra_ctx;
    const otaml_keyring_t *config_keyring; /* the server's online config key; NULL disables configuration */
    otaml_config_apply_fn config_apply;     /* may be NULL: documents are verified, stored and reported */
    void *config_apply_ctx;
    uint32_t default_poll_interval_s; /* until the server names one */
    uint32_t min_poll_interval_s;     /* floor on what the server asks for */
    /* The rollback gate (manifests/README.md, "Rollback"): how long a new image keeps looking for the
     * server before it rolls back as server_unreachable (0: one attempt), the retry delays (doubling
     * from min to max, with jitter), and how many such rollbacks of one version are forgiven. */
    uint32_t confirm_window_s;
    uint32_t confirm_backoff_min_ms;
    uint32_t confirm_backoff_max_ms;
    uint32_t unreachable_retakes;
    /* Images of at least this many bytes report download_progress at OTAML_DOWNLOAD_PROGRESS_PCT (0: never). */
    uint32_t progress_min_bytes;
} otaml_agent_config_t;

typedef struct {
    otaml_agent_config_t cfg;
    char manifest_url[256];
    char events_url[256];
    char etag[80];          /* of the last manifest fully acted on: its poll may be a 304 */
    char rejected_etag[80]; /* a refusal is reported once per manifest, not every poll */
    uint32_t poll_interval_s;
    otaml_slot_info_t running;
    /* RAM copies of mf_ver, failed_ver and "ob_kind is set": the agent is their only writer, so a
     * poll reads no NVS. */
    uint64_t installed_manifest_version;
    char failed_version[32];
    bool outbox_pending; /* ob_kind is set in the store */
    char token[OTAML_MAX_TOKEN + 1];      /* the device token in use ("" until claimed) */
    char token_next[OTAML_MAX_TOKEN + 1]; /* a rotated token being tried; "" when none */
    otaml_keyset_t keyset;                /* the key set applied from NVS (version 0: none) */
    otaml_keyring_t keyset_ring;          /* its keys */
    const otaml_keyring_t *ring;          /* manifests are verified with: keyset_ring, or cfg.keyring */
    uint64_t keyset_version;              /* of the keys in ring */
    otaml_config_t config;     /* applied desired configuration */
    char config_applied[OTAML_CONFIG_MAX_APPLIED];   /* its X-Otaml-Config-Applied form */
} otaml_agent_t;

typedef enum {
    OTAML_POLL_IDLE,      /* nothing new (304, 404, or no update) */
    OTAML_POLL_REJECTED,  /* manifest or image refused and reported */
    OTAML_POLL_RETRY,     /* transport or flash trouble; the next poll resumes */
} otaml_poll_outcome_t;

/** @return OTAML_OK, OTAML_ERR_INVALID_ARG (missing field or URL too long), OTAML_ERR_IO. */
otaml_status_t otaml_agent_init(otaml_agent_t *agent, const otaml_agent_config_t *cfg);

/**
 * The rollback gate; call once at boot, before starting other tasks' update-sensitive work.
 * If the running image is PENDING_VERIFY: run the self-test (a failure rolls back at once), then wait
 * for an IP address and ask the server, with backoff, until it answers or confirm_window_s runs out.
 * An answer confirms the image; a refusal of its check-in (HTTP 400 or 401 from the otaml server)
 * rolls back at once (self_test_failed); no answer in the window rolls back as server_unreachable.
 * Rolling back marks the image invalid and reboots into the previous slot (does not return then).
 * Otherwise: notice an install that did not stick (rolled back by the gate, or by the bootloader
 * after a reset while pending), remember its version as failed (unless it is a forgiven
 * server_unreachable rollback) and queue the rolled_back event.
 * @return OTAML_OK, OTAML_ERR_IO (slot state unreadable or unwritable).
 */
otaml_status_t otaml_agent_boot(otaml_agent_t *agent);

/**
 * One poll: check in, and act on the manifest. Reboots (does not return) after installing an image.
 * @return OTAML_OK with *outcome set; OTAML_ERR_TRANSPORT when the server was unreachable.
 */
otaml_status_t otaml_agent_poll(otaml_agent_t *agent, otaml_poll_outcome_t *outcome);

/** Milliseconds to wait before the next poll: the server's interval with up to 10 % jitter. */
uint32_t otaml_agent_next_delay_ms(const otaml_agent_t *agent);

#ifdef __cplusplus
}
#endif
