/*
 * The device protocol's vocabulary, as manifests/README.md defines it. The wire strings must equal
 * server/otaml/fleet/protocol.py; tests/server/test_protocol_vocabulary.py checks this header.
 */
#pragma once

#ifdef __cplusplus
extern "C" {
#endif

#define OTAML_MAX_MANIFEST_BYTES 4096
#define OTAML_MAX_SIGNATURE_B64 128 /* base64 of a DER ECDSA P-256 signature is at most 96 chars */
#define OTAML_MAX_CONFIG_BYTES 512   /* a desired-config document */
#define OTAML_MAX_CONFIG_B64 700     /* base64 of 512 bytes is 684 characters */
#define OTAML_MAX_DEVICE_ID 64       /* [A-Za-z0-9._:-]{1,64} */
#define OTAML_MAX_TOKEN 64           /* a device or claim token: [A-Za-z0-9_-]{16,64} */
#define OTAML_MAX_URL 200            /* the server URL a device is provisioned with */

#define OTAML_H_DEVICE_ID "X-Otaml-Device-Id"
#define OTAML_H_VERSION "X-Otaml-Version"
#define OTAML_H_PARTITION "X-Otaml-Partition"
#define OTAML_H_OTA_STATE "X-Otaml-Ota-State"
#define OTAML_H_MANIFEST_VERSION "X-Otaml-Manifest-Version"
#define OTAML_H_SECURE_VERSION "X-Otaml-Secure-Version"
#define OTAML_H_SIGNATURE "X-Otaml-Signature"
#define OTAML_H_KEY_ID "X-Otaml-Key-Id" /* informational: the device trusts key_id inside the signed manifest */
#define OTAML_H_POLL_INTERVAL "X-Otaml-Poll-Interval"
#define OTAML_H_CONFIG_REVISION "X-Otaml-Config-Revision"
#define OTAML_H_CONFIG_APPLIED "X-Otaml-Config-Applied"
#define OTAML_H_CONFIG "X-Otaml-Config"
#define OTAML_H_CONFIG_SIGNATURE "X-Otaml-Config-Signature"
#define OTAML_H_MODEL "X-Otaml-Model"
#define OTAML_H_ML_COUNTERS "X-Otaml-Ml-Counters"
#define OTAML_H_ML_LATENCY_US "X-Otaml-Ml-Latency-Us"
#define OTAML_H_NEW_TOKEN "X-Otaml-New-Token"
#define OTAML_H_KEYSET_VERSION "X-Otaml-Keyset-Version"
#define OTAML_H_KEYSET "X-Otaml-Keyset"
#define OTAML_H_KEYSET_SIGNATURE "X-Otaml-Keyset-Signature"
#define OTAML_H_RSSI "X-Otaml-Rssi"
#define OTAML_H_FREE_HEAP "X-Otaml-Free-Heap"
#define OTAML_H_MIN_FREE_HEAP "X-Otaml-Min-Free-Heap"
#define OTAML_H_UPTIME_S "X-Otaml-Uptime-S"
#define OTAML_H_RESET_REASON "X-Otaml-Reset-Reason"

/* Fractions of an image at which a download reports progress (download_progress events). */
#define OTAML_DOWNLOAD_PROGRESS_PCT {25, 50, 75}

#define OTAML_REASON_LIST(X)                                       \
    X(OTAML_REASON_OK, "ok")                                       \
    X(OTAML_REASON_BAD_SIGNATURE, "bad_signature")                 \
    X(OTAML_REASON_MANIFEST_TOO_LARGE, "manifest_too_large")       \
    X(OTAML_REASON_MANIFEST_MALFORMED, "manifest_malformed")       \
    X(OTAML_REASON_MANIFEST_EXPIRED, "manifest_expired")           \
    X(OTAML_REASON_MANIFEST_REPLAYED, "manifest_replayed")         \
    X(OTAML_REASON_KEY_MISMATCH, "key_mismatch")                   \
    X(OTAML_REASON_PROJECT_MISMATCH, "project_mismatch")           \
    X(OTAML_REASON_CHIP_MISMATCH, "chip_mismatch")                 \
    X(OTAML_REASON_CHANNEL_MISMATCH, "channel_mismatch")           \
    X(OTAML_REASON_SECURE_VERSION_LOWER, "secure_version_lower")   \
    X(OTAML_REASON_VERSION_FAILED_BEFORE, "version_failed_before") \
    X(OTAML_REASON_IMAGE_TOO_LARGE, "image_too_large")             \
    X(OTAML_REASON_SIZE_MISMATCH, "size_mismatch")                 \
    X(OTAML_REASON_HASH_MISMATCH, "hash_mismatch")                 \
    X(OTAML_REASON_IMAGE_INVALID, "image_invalid")                 \
    X(OTAML_REASON_DOWNLOAD_ERROR, "download_error")               \
    X(OTAML_REASON_FLASH_ERROR, "flash_error")                     \
    X(OTAML_REASON_SELF_TEST_FAILED, "self_test_failed")           \
    X(OTAML_REASON_RESET_WHILE_PENDING, "reset_while_pending")     \
    X(OTAML_REASON_SERVER_UNREACHABLE, "server_unreachable")

typedef enum {
#define OTAML_X_ENUM(name, text) name,
    OTAML_REASON_LIST(OTAML_X_ENUM)
#undef OTAML_X_ENUM
} otaml_reason_t;

#define OTAML_EVENT_LIST(X)                                \
    X(OTAML_EVENT_DOWNLOAD_STARTED, "download_started")    \
    X(OTAML_EVENT_DOWNLOAD_PROGRESS, "download_progress")  \
    X(OTAML_EVENT_DOWNLOAD_FAILED, "download_failed")      \
    X(OTAML_EVENT_VERIFIED, "verified")                    \
    X(OTAML_EVENT_INSTALLED, "installed")                  \
    X(OTAML_EVENT_BOOTED, "booted")                        \
    X(OTAML_EVENT_CONFIRMED, "confirmed")                  \
    X(OTAML_EVENT_ROLLED_BACK, "rolled_back")              \
    X(OTAML_EVENT_REJECTED, "rejected")

typedef enum {
#define OTAML_X_ENUM(name, text) name,
    OTAML_EVENT_LIST(OTAML_X_ENUM)
#undef OTAML_X_ENUM
} otaml_event_t;

/* esp_reset_reason_t in the order of ESP-IDF's esp_system.h (X-Otaml-Reset-Reason). */
#define OTAML_RESET_REASON_LIST(X)                  \
    X(OTAML_RESET_UNKNOWN, "unknown")               \
    X(OTAML_RESET_POWERON, "poweron")               \
    X(OTAML_RESET_EXT, "ext")                       \
    X(OTAML_RESET_SW, "sw")                         \
    X(OTAML_RESET_PANIC, "panic")                   \
    X(OTAML_RESET_INT_WDT, "int_wdt")               \
    X(OTAML_RESET_TASK_WDT, "task_wdt")             \
    X(OTAML_RESET_WDT, "wdt")                       \
    X(OTAML_RESET_DEEPSLEEP, "deepsleep")           \
    X(OTAML_RESET_BROWNOUT, "brownout")             \
    X(OTAML_RESET_SDIO, "sdio")                     \
    X(OTAML_RESET_USB, "usb")                       \
    X(OTAML_RESET_JTAG, "jtag")                     \
    X(OTAML_RESET_EFUSE, "efuse")                   \
    X(OTAML_RESET_PWR_GLITCH, "pwr_glitch")         \
    X(OTAML_RESET_CPU_LOCKUP, "cpu_lockup")

typedef enum {
#define OTAML_X_ENUM(name, text) name,
    OTAML_RESET_REASON_LIST(OTAML_X_ENUM)
#undef OTAML_X_ENUM
} otaml_reset_reason_t;

/** Wire name of a reason code ("hash_mismatch"); never NULL. */
const char *otaml_reason_to_str(otaml_reason_t reason);
/** Wire name of an event kind ("rolled_back"); never NULL. */
const char *otaml_event_to_str(otaml_event_t event);
/** Wire name of a reset reason ("brownout"); never NULL ("unknown" for a value out of range). */
const char *otaml_reset_reason_to_str(otaml_reset_reason_t reason);
/** Reason code for a wire name; OTAML_REASON_OK for an unknown name. */
otaml_reason_t otaml_reason_from_str(const char *name);

#ifdef __cplusplus
}
#endif
