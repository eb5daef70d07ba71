/*
 * The port: everything the portable core needs from a platform, as plain functions. Implemented by
 * port/esp_idf (esp_http_client, esp_ota_ops, nvs, SNTP) and port/posix (libcurl, a flash file with
 * ESP-IDF's partition and otadata semantics). The core never includes a platform header.
 *
 * One firmware update is in progress at a time, so the update functions carry no handle.
 */
#pragma once

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "otaml_protocol.h"
#include "otaml_status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- logging (ESP-IDF style: "I (1234) tag: message") ---- */

typedef enum { OTAML_LOG_ERROR, OTAML_LOG_WARN, OTAML_LOG_INFO, OTAML_LOG_DEBUG } otaml_log_level_t;

void otaml_port_log(otaml_log_level_t level, const char *tag, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define OTAML_LOGE(tag, ...) otaml_port_log(OTAML_LOG_ERROR, tag, __VA_ARGS__)
#define OTAML_LOGW(tag, ...) otaml_port_log(OTAML_LOG_WARN, tag, __VA_ARGS__)
#define OTAML_LOGI(tag, ...) otaml_port_log(OTAML_LOG_INFO, tag, __VA_ARGS__)
#define OTAML_LOGD(tag, ...) otaml_port_log(OTAML_LOG_DEBUG, tag, __VA_ARGS__)

/* ---- time and randomness ---- */

/** Unix seconds if the clock is trusted (SNTP synchronized), else 0. Expiry is judged only when trusted. */
int64_t otaml_port_trusted_time(void);
/** A random 32-bit value (poll jitter; not for cryptography). */
uint32_t otaml_port_random(void);
/** Cryptographically strong random bytes (a token the device chooses when it claims itself):
 * esp_fill_random on the device, getrandom on the host. @return OTAML_OK, OTAML_ERR_IO. */
otaml_status_t otaml_port_random_bytes(uint8_t *buf, size_t len);
/** Block the calling task for ms milliseconds; other tasks keep running (vTaskDelay on the device). */
void otaml_port_delay_ms(uint32_t ms);

/* ---- device health (check-in headers X-Otaml-Rssi, -Free-Heap, -Min-Free-Heap, -Uptime-S, -Reset-Reason) ---- */

typedef struct {
    bool has_rssi;                      /* false while not associated with an access point */
    int8_t rssi;                        /* dBm of the access point (wifi_ap_record_t.rssi) */
    uint32_t free_heap;                 /* bytes free now (esp_get_free_heap_size); 0: unknown */
    uint32_t min_free_heap;             /* lowest free since boot (esp_get_minimum_free_heap_size); 0: unknown */
    uint64_t uptime_s;                  /* since boot */
    otaml_reset_reason_t reset_reason;  /* why the chip last reset (esp_reset_reason) */
} otaml_health_t;

/** Fill out with the device's health figures now. Cheap: called for every check-in. */
void otaml_port_health(otaml_health_t *out);

/* ---- network ---- */

/**
 * Wait until the device has an IP address (station associated, DHCP answered), at most timeout_ms;
 * returns at once when it already has one. The rollback gate calls it before each attempt to reach
 * the server, so a device still joining its network spends no attempts.
 * @return OTAML_OK (an address), OTAML_ERR_TRANSPORT (none within timeout_ms).
 */
otaml_status_t otaml_port_network_wait(uint32_t timeout_ms);

/* ---- persistent storage (NVS namespace "otaml"; keys of at most 15 characters) ---- */

/** @return OTAML_OK, OTAML_ERR_NOT_FOUND (never set), OTAML_ERR_IO. */
otaml_status_t otaml_port_store_get_u64(const char *key, uint64_t *value);
/** @return OTAML_OK, OTAML_ERR_IO. Durable when it returns. */
otaml_status_t otaml_port_store_set_u64(const char *key, uint64_t value);
/** @return OTAML_OK, OTAML_ERR_NOT_FOUND, OTAML_ERR_TOO_LARGE (buffer too small), OTAML_ERR_IO. */
otaml_status_t otaml_port_store_get_str(const char *key, char *buf, size_t size);
/** @return OTAML_OK, OTAML_ERR_IO. Durable when it returns. */
otaml_status_t otaml_port_store_set_str(const char *key, const char *value);
/** @return OTAML_OK (also when absent), OTAML_ERR_IO. */
otaml_status_t otaml_port_store_erase(const char *key);

/* ---- HTTP ---- */

typedef struct {
    const char *name;
    const char *value;
} otaml_header_t;

/** Receives a 2xx response body in pieces. Return non-OK to stop the transfer. */
typedef otaml_status_t (*otaml_body_sink_t)(void *ctx, const uint8_t *data, size_t len);

typedef struct {
    int status;                       /* HTTP status, 0 if no response */
    int64_t content_length;           /* -1 if unknown */
    uint32_t poll_interval_s;         /* X-Otaml-Poll-Interval, 0 if absent */
    char etag[80];                    /* "" if absent */
    char signature[128];              /* X-Otaml-Signature, "" if absent */
    char config[OTAML_MAX_CONFIG_B64 + 1];               /* X-Otaml-Config, "" if absent or too long */
    char config_signature[OTAML_MAX_SIGNATURE_B64 + 1];  /* X-Otaml-Config-Signature */
    char new_token[OTAML_MAX_TOKEN + 1];                 /* X-Otaml-New-Token, "" if absent or too long */
    /* X-Otaml-Keyset goes into a buffer the caller owns (it is 1.4 KB and rare: the poll alone asks for
     * it); NULL: not captured. Ports keep these two fields when they reset the rest. */
    char *keyset;
    size_t keyset_cap;
    char keyset_signature[OTAML_MAX_SIGNATURE_B64 + 1]; /* X-Otaml-Keyset-Signature */
} otaml_http_response_t;

/** Reset a response, keeping the caller's keyset buffer (emptied). For ports. */
void otaml_http_response_reset(otaml_http_response_t *resp);

/**
 * GET url with extra headers. The body of a 2xx response is passed to sink (may be NULL to discard);
 * other bodies are discarded. Response headers of interest are captured in resp.
 *
 * @return OTAML_OK when a response arrived (any status: check resp->status),
 *         OTAML_ERR_ABORTED when sink returned non-OK (the sink's status is not kept),
 *         OTAML_ERR_TRANSPORT on connection, TLS or read errors (including a body cut short),
 *         OTAML_ERR_NO_MEM.
 */
otaml_status_t otaml_port_http_get(const char *url, const otaml_header_t *headers, size_t n_headers,
                                   otaml_body_sink_t sink, void *sink_ctx, otaml_http_response_t *resp);

/**
 * POST a body. @return OTAML_OK when a response arrived (*status set), OTAML_ERR_TRANSPORT, OTAML_ERR_NO_MEM.
 */
otaml_status_t otaml_port_http_post(const char *url, const otaml_header_t *headers, size_t n_headers,
                                    const char *content_type, const char *body, size_t len, int *status);

/* ---- firmware slots (esp_ota_ops semantics) ---- */

typedef enum {
    OTAML_IMG_NEW,
    OTAML_IMG_PENDING_VERIFY,
    OTAML_IMG_VALID,
    OTAML_IMG_INVALID,
    OTAML_IMG_ABORTED,
    OTAML_IMG_UNDEFINED,
} otaml_img_state_t;

/** Wire name of a state ("pending_verify"), as in the X-Otaml-Ota-State header. */
const char *otaml_img_state_to_str(otaml_img_state_t state);

typedef struct {
    char label[17];          /* partition label: ota_0, ota_1 */
    otaml_img_state_t state; /* of the partition in otadata */
    char version[32];        /* esp_app_desc_t.version of the image in it */
    char project[32];        /* esp_app_desc_t.project_name */
    uint32_t secure_version; /* esp_app_desc_t.secure_version */
} otaml_slot_info_t;

/** The slot this image runs from. @return OTAML_OK, OTAML_ERR_IO. */
otaml_status_t otaml_port_running_slot(otaml_slot_info_t *out);
/** Size in bytes of the slot the next update goes to. @return OTAML_OK, OTAML_ERR_NOT_FOUND. */
otaml_status_t otaml_port_passive_slot_size(size_t *size);

/**
 * Start writing an image of image_size bytes into the passive slot, at resume_offset (0 for a fresh
 * download: the first write must start with the image magic; a resumed one continues without erasing
 * what was written before).
 * @return OTAML_OK, OTAML_ERR_STATE (running image is pending verification, or an update is already
 *         open), OTAML_ERR_TOO_LARGE (does not fit the slot), OTAML_ERR_IO.
 */
otaml_status_t otaml_port_update_begin(size_t image_size, size_t resume_offset);
/** @return OTAML_OK, OTAML_ERR_STATE (no update open), OTAML_ERR_IMAGE (bad magic), OTAML_ERR_IO. */
otaml_status_t otaml_port_update_write(const void *data, size_t len);
/** Read back bytes already written to the passive slot (to re-hash them when resuming). */
otaml_status_t otaml_port_update_read(size_t offset, void *buf, size_t len);
/** Close the open update without switching anything. Always safe to call. */
void otaml_port_update_abort(void);
/**
 * Close the update and validate the image as the bootloader will (header, segments, checksum,
 * appended SHA-256); fill info from its esp_app_desc_t.
 * @return OTAML_OK, OTAML_ERR_IMAGE (does not validate), OTAML_ERR_STATE, OTAML_ERR_IO.
 */
otaml_status_t otaml_port_update_end(otaml_slot_info_t *info);
/** Make the validated passive slot the next boot partition (state NEW). @return OTAML_OK, OTAML_ERR_IO. */
otaml_status_t otaml_port_update_activate(void);

/** Confirm the running image (PENDING_VERIFY -> VALID; cancels rollback). @return OTAML_OK, OTAML_ERR_IO. */
otaml_status_t otaml_port_mark_valid(void);
/** Mark the running image INVALID and reboot into the previous slot. Returns only on error. */
otaml_status_t otaml_port_mark_invalid_and_reboot(void);
/** Restart the device. Does not return. */
void otaml_port_reboot(void) __attribute__((noreturn));

/* ---- ML interpreter (TFLM on the device; the TFLM wheel in a worker process on the host) ---- */

/** Microseconds since boot (inference latency). */
uint64_t otaml_port_uptime_us(void);

/**
 * Load a .tflite model into an interpreter with an arena of arena_bytes; report its input and output
 * element counts. Replaces a previously loaded model.
 * @return OTAML_OK, OTAML_ERR_PARSE (the interpreter refuses the model or cannot allocate its tensors
 *         in the arena), OTAML_ERR_NO_MEM, OTAML_ERR_IO (interpreter unavailable).
 */
otaml_status_t otaml_port_ml_load(const uint8_t *model, size_t len, size_t arena_bytes, size_t *n_in, size_t *n_out);

/** Run the loaded model on int8 input. @return OTAML_OK, OTAML_ERR_STATE (no model), OTAML_ERR_IO. */
otaml_status_t otaml_port_ml_invoke(const int8_t *in, size_t n_in, int8_t *out, size_t n_out);

/* ---- MQTT (predictions; Kconfig OTAML_MQTT on the device, libmosquitto on the host) ---- */

typedef struct {
    const char *url;       /* (mqtt|mqtts)://HOST(:PORT)?, already judged by otaml_config_mqtt_url_ok */
    const char *client_id; /* the device id */
    const char *username;  /* NULL: none (NVS key mqtt_user) */
    const char *password;  /* NULL: none (NVS key mqtt_pass) */
} otaml_mqtt_conn_t;

/**
 * Start a client that connects to conn->url and keeps reconnecting in the background; returns at once
 * (a broker that is down now is not an error). mqtts pins a CA (ports document which). The strings are
 * copied or outlive the client.
 * @return OTAML_OK; OTAML_ERR_STATE (a client runs already, or this build has no MQTT client);
 *         OTAML_ERR_INVALID_ARG (the URL, or TLS without a CA); OTAML_ERR_NO_MEM.
 */
otaml_status_t otaml_port_mqtt_start(const otaml_mqtt_conn_t *conn);
/** Whether the client is connected to its broker now. */
bool otaml_port_mqtt_connected(void);
/** Publish with QoS 0, not retained. May wait for the network (call it from the publisher task only).
 * @return OTAML_OK, OTAML_ERR_TRANSPORT (not connected, or the send failed), OTAML_ERR_STATE (no client). */
otaml_status_t otaml_port_mqtt_publish(const char *topic, const char *payload, size_t len);
/** Disconnect and free the client. Always safe to call. */
void otaml_port_mqtt_stop(void);

/* ---- sensors ---- */

/**
 * The next reading of the n sensors, in the model card's feature order and units. Both ports replay
 * recorded samples (firmware/model/samples.csv); a real ADC or Modbus driver replaces this function.
 * @return OTAML_OK, OTAML_ERR_STATE (no samples), OTAML_ERR_INVALID_ARG (n differs from the recording).
 */
otaml_status_t otaml_port_sensor_read(float *values, size_t n);

#ifdef __cplusplus
}
#endif
