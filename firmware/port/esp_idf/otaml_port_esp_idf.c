/*
 * ESP-IDF port of the otaml core (ESP-IDF v5.5): esp_http_client, esp_ota_ops, NVS, esp_log.
 * Every esp_err_t is logged by name where it is turned into an otaml_status_t.
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "esp_app_desc.h"
#include "esp_crt_bundle.h"
#include "esp_http_client.h"
#include "esp_log.h"
#include "esp_ota_ops.h"
#include "esp_partition.h"
#include "esp_random.h"
#include "esp_system.h"
#include "esp_timer.h"
#include "esp_wifi.h"
#include "freertos/FreeRTOS.h"
#include "freertos/task.h"
#include "nvs.h"
#include "sdkconfig.h"

#include "otaml_port.h"
#include "otaml_port_esp_idf.h"
#include "otaml_protocol.h"

static const char *TAG = "port_esp_idf";

#define NVS_NAMESPACE "otaml"
#define TRUSTED_TIME_FLOOR 1704067200 /* 2024-01-01: a clock before this was never set by SNTP */

static const char *s_server_ca_pem;
static otaml_port_esp_idf_ip_wait_fn s_ip_wait;

void otaml_port_esp_idf_init(const char *server_ca_pem, otaml_port_esp_idf_ip_wait_fn ip_wait)
{
    s_server_ca_pem = server_ca_pem;
    s_ip_wait = ip_wait;
}

/* ---- log, time, random ---- */

void otaml_port_log(otaml_log_level_t level, const char *tag, const char *fmt, ...)
{
    static const esp_log_level_t levels[] = {ESP_LOG_ERROR, ESP_LOG_WARN, ESP_LOG_INFO, ESP_LOG_DEBUG};
    static const char letters[] = {'E', 'W', 'I', 'D'};
    if (esp_log_level_get(tag) < levels[level]) return;
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    esp_log_write(levels[level], tag, "%c (%" PRIu32 ") %s: %s\n", letters[level], esp_log_timestamp(), tag, msg);
}

int64_t otaml_port_trusted_time(void)
{
    time_t now = time(NULL);
    return now >= TRUSTED_TIME_FLOOR ? (int64_t)now : 0;
}

uint32_t otaml_port_random(void) { return esp_random(); }

/* The hardware RNG is a true random source while Wi-Fi (or the bootloader's entropy source) runs: the
 * device claims its token after Wi-Fi is up. */
otaml_status_t otaml_port_random_bytes(uint8_t *buf, size_t len)
{
    esp_fill_random(buf, len);
    return OTAML_OK;
}

void otaml_port_delay_ms(uint32_t ms) { vTaskDelay(pdMS_TO_TICKS(ms)); }

/* ---- device health ---- */

void otaml_port_health(otaml_health_t *out)
{
    memset(out, 0, sizeof(*out));
    wifi_ap_record_t ap;
    /* ESP_ERR_WIFI_NOT_CONNECT while not associated: then there is no signal to report. */
    if (esp_wifi_sta_get_ap_info(&ap) == ESP_OK) {
        out->has_rssi = true;
        out->rssi = ap.rssi;
    }
    out->free_heap = esp_get_free_heap_size();
    out->min_free_heap = esp_get_minimum_free_heap_size();
    out->uptime_s = (uint64_t)(esp_timer_get_time() / 1000000);
    /* otaml_reset_reason_t lists esp_reset_reason_t in its order (tests/server/test_protocol_vocabulary.py
     * pins the names); a value a newer ESP-IDF adds reads as unknown. */
    esp_reset_reason_t reason = esp_reset_reason();
    out->reset_reason = (reason >= ESP_RST_UNKNOWN && reason <= ESP_RST_CPU_LOCKUP) ? (otaml_reset_reason_t)reason
                                                                                   : OTAML_RESET_UNKNOWN;
}

/* ---- network ---- */

otaml_status_t otaml_port_network_wait(uint32_t timeout_ms)
{
    if (s_ip_wait == NULL || s_ip_wait(timeout_ms)) return OTAML_OK;
    return OTAML_ERR_TRANSPORT;
}

/* ---- NVS ---- */

static otaml_status_t prv_nvs_status(esp_err_t err, const char *op, const char *key)
{
    if (err == ESP_OK) return OTAML_OK;
    if (err == ESP_ERR_NVS_NOT_FOUND) return OTAML_ERR_NOT_FOUND;
    if (err == ESP_ERR_NVS_INVALID_LENGTH) return OTAML_ERR_TOO_LARGE;
    ESP_LOGW(TAG, "nvs %s %s: %s", op, key, esp_err_to_name(err));
    return OTAML_ERR_IO;
}

otaml_status_t otaml_port_store_get_u64(const char *key, uint64_t *value)
{
    nvs_handle_t h;
    esp_err_t err = nvs_open(NVS_NAMESPACE, NVS_READONLY, &h);
    if (err == ESP_OK) {
        err = nvs_get_u64(h, key, value);
        nvs_close(h);
    }
    return prv_nvs_status(err, "get", key);
}

otaml_status_t otaml_port_store_set_u64(const char *key, uint64_t value)
{
    nvs_handle_t h;
    esp_err_t err = nvs_open(NVS_NAMESPACE, NVS_READWRITE, &h);
    if (err == ESP_OK) {
        err = nvs_set_u64(h, key, value);
        if (err == ESP_OK) err = nvs_commit(h);
        nvs_close(h);
    }
    return prv_nvs_status(err, "set", key);
}

otaml_status_t otaml_port_store_get_str(const char *key, char *buf, size_t size)
{
    nvs_handle_t h;
    esp_err_t err = nvs_open(NVS_NAMESPACE, NVS_READONLY, &h);
    if (err == ESP_OK) {
        size_t len = size;
        err = nvs_get_str(h, key, buf, &len);
        nvs_close(h);
    }
    return prv_nvs_status(err, "get", key);
}

otaml_status_t otaml_port_store_set_str(const char *key, const char *value)
{
    nvs_handle_t h;
    esp_err_t err = nvs_open(NVS_NAMESPACE, NVS_READWRITE, &h);
    if (err == ESP_OK) {
        err = nvs_set_str(h, key, value);
        if (err == ESP_OK) err = nvs_commit(h);
        nvs_close(h);
    }
    return prv_nvs_status(err, "set", key);
}

otaml_status_t otaml_port_store_erase(const char *key)
{
    nvs_handle_t h;
    esp_err_t err = nvs_open(NVS_NAMESPACE, NVS_READWRITE, &h);
    if (err == ESP_OK) {
        err = nvs_erase_key(h, key);
        if (err == ESP_ERR_NVS_NOT_FOUND) err = ESP_OK;
        if (err == ESP_OK) err = nvs_commit(h);
        nvs_close(h);
    }
    return prv_nvs_status(err, "erase", key);
}

/* ---- HTTP ---- */

static esp_err_t prv_on_event(esp_http_client_event_t *evt)
{
    otaml_http_response_t *resp = evt->user_data;
    if (evt->event_id != HTTP_EVENT_ON_HEADER || resp == NULL) return ESP_OK;
    if (strcasecmp(evt->header_key, "ETag") == 0) {
        snprintf(resp->etag, sizeof(resp->etag), "%s", evt->header_value);
    } else if (strcasecmp(evt->header_key, OTAML_H_SIGNATURE) == 0) {
        snprintf(resp->signature, sizeof(resp->signature), "%s", evt->header_value);
    } else if (strcasecmp(evt->header_key, OTAML_H_POLL_INTERVAL) == 0) {
        resp->poll_interval_s = (uint32_t)strtoul(evt->header_value, NULL, 10);
    } else if (strcasecmp(evt->header_key, OTAML_H_CONFIG) == 0) {
        /* Too long means not ours to parse: leave it empty rather than truncated. */
        if (strlen(evt->header_value) < sizeof(resp->config)) strcpy(resp->config, evt->header_value);
    } else if (strcasecmp(evt->header_key, OTAML_H_CONFIG_SIGNATURE) == 0) {
        if (strlen(evt->header_value) < sizeof(resp->config_signature)) {
            strcpy(resp->config_signature, evt->header_value);
        }
    } else if (strcasecmp(evt->header_key, OTAML_H_NEW_TOKEN) == 0) {
        if (strlen(evt->header_value) < sizeof(resp->new_token)) strcpy(resp->new_token, evt->header_value);
    } else if (strcasecmp(evt->header_key, OTAML_H_KEYSET) == 0 && resp->keyset != NULL) {
        if (strlen(evt->header_value) < resp->keyset_cap) strcpy(resp->keyset, evt->header_value);
    } else if (strcasecmp(evt->header_key, OTAML_H_KEYSET_SIGNATURE) == 0) {
        if (strlen(evt->header_value) < sizeof(resp->keyset_signature)) strcpy(resp->keyset_signature, evt->header_value);
    }
    return ESP_OK;
}

static esp_http_client_handle_t prv_client(const char *url, otaml_http_response_t *resp, esp_http_client_method_t method)
{
#if !CONFIG_OTAML_ALLOW_PLAIN_HTTP
    if (strncmp(url, "https://", 8) != 0) {
        ESP_LOGE(TAG, "refusing plain-HTTP URL %s (enable CONFIG_OTAML_ALLOW_PLAIN_HTTP for a lab)", url);
        return NULL;
    }
#endif
    esp_http_client_config_t config = {
        .url = url,
#if CONFIG_OTAML_USE_CERT_BUNDLE
        .crt_bundle_attach = esp_crt_bundle_attach, /* a CDN with a public certificate */
#else
        .cert_pem = s_server_ca_pem, /* the release server's CA, pinned */
#endif
        .timeout_ms = CONFIG_OTAML_HTTP_TIMEOUT_MS,
        .event_handler = prv_on_event,
        .user_data = resp,
        .method = method,
        .keep_alive_enable = true,
        .buffer_size = 2048,    /* response headers: X-Otaml-Keyset is up to 1368 characters */
        .buffer_size_tx = 1536, /* request headers: the check-in with ML counters and config */
    };
    return esp_http_client_init(&config);
}

otaml_status_t otaml_port_http_get(const char *url, const otaml_header_t *headers, size_t n_headers,
                                   otaml_body_sink_t sink, void *sink_ctx, otaml_http_response_t *resp)
{
    otaml_http_response_reset(resp);
    resp->content_length = -1;
    esp_http_client_handle_t client = prv_client(url, resp, HTTP_METHOD_GET);
    if (client == NULL) return OTAML_ERR_TRANSPORT;
    for (size_t i = 0; i < n_headers; i++) esp_http_client_set_header(client, headers[i].name, headers[i].value);

    otaml_status_t st = OTAML_OK;
    esp_err_t err = esp_http_client_open(client, 0);
    if (err != ESP_OK) {
        ESP_LOGW(TAG, "GET %s: %s", url, esp_err_to_name(err));
        esp_http_client_cleanup(client);
        return OTAML_ERR_TRANSPORT;
    }
    if (esp_http_client_fetch_headers(client) < 0) {
        st = OTAML_ERR_TRANSPORT;
        goto out;
    }
    resp->status = esp_http_client_get_status_code(client);
    if (!esp_http_client_is_chunked_response(client)) resp->content_length = esp_http_client_get_content_length(client);
    bool deliver = resp->status >= 200 && resp->status < 300 && sink != NULL;
    char buf[1024];
    for (;;) {
        int n = esp_http_client_read(client, buf, sizeof(buf));
        if (n < 0) {
            st = OTAML_ERR_TRANSPORT;
            break;
        }
        if (n == 0) {
            if (!esp_http_client_is_complete_data_received(client)) st = OTAML_ERR_TRANSPORT; /* cut short */
            break;
        }
        if (deliver && sink(sink_ctx, (const uint8_t *)buf, (size_t)n) != OTAML_OK) {
            st = OTAML_ERR_ABORTED;
            break;
        }
    }
out:
    esp_http_client_close(client);
    esp_http_client_cleanup(client);
    return st;
}

otaml_status_t otaml_port_http_post(const char *url, const otaml_header_t *headers, size_t n_headers,
                                    const char *content_type, const char *body, size_t len, int *status)
{
    *status = 0;
    esp_http_client_handle_t client = prv_client(url, NULL, HTTP_METHOD_POST);
    if (client == NULL) return OTAML_ERR_TRANSPORT;
    for (size_t i = 0; i < n_headers; i++) esp_http_client_set_header(client, headers[i].name, headers[i].value);
    esp_http_client_set_header(client, "Content-Type", content_type);
    otaml_status_t st = OTAML_ERR_TRANSPORT;
    esp_err_t err = esp_http_client_open(client, (int)len);
    if (err == ESP_OK && esp_http_client_write(client, body, (int)len) == (int)len &&
        esp_http_client_fetch_headers(client) >= 0) {
        *status = esp_http_client_get_status_code(client);
        int flushed = 0;
        esp_http_client_flush_response(client, &flushed);
        st = OTAML_OK;
    } else if (err != ESP_OK) {
        ESP_LOGW(TAG, "POST %s: %s", url, esp_err_to_name(err));
    }
    esp_http_client_close(client);
    esp_http_client_cleanup(client);
    return st;
}

/* ---- firmware slots ---- */

static const esp_partition_t *s_target;
static esp_ota_handle_t s_handle;
static bool s_open;

static otaml_img_state_t prv_state(esp_ota_img_states_t s)
{
    switch (s) {
    case ESP_OTA_IMG_NEW: return OTAML_IMG_NEW;
    case ESP_OTA_IMG_PENDING_VERIFY: return OTAML_IMG_PENDING_VERIFY;
    case ESP_OTA_IMG_VALID: return OTAML_IMG_VALID;
    case ESP_OTA_IMG_INVALID: return OTAML_IMG_INVALID;
    case ESP_OTA_IMG_ABORTED: return OTAML_IMG_ABORTED;
    default: return OTAML_IMG_UNDEFINED;
    }
}

static void prv_fill(otaml_slot_info_t *out, const esp_partition_t *part, const esp_app_desc_t *desc)
{
    memset(out, 0, sizeof(*out));
    snprintf(out->label, sizeof(out->label), "%s", part->label);
    snprintf(out->version, sizeof(out->version), "%s", desc->version);
    snprintf(out->project, sizeof(out->project), "%s", desc->project_name);
    out->secure_version = desc->secure_version;
    esp_ota_img_states_t state;
    out->state = esp_ota_get_state_partition(part, &state) == ESP_OK ? prv_state(state) : OTAML_IMG_UNDEFINED;
}

otaml_status_t otaml_port_running_slot(otaml_slot_info_t *out)
{
    const esp_partition_t *running = esp_ota_get_running_partition();
    if (running == NULL) return OTAML_ERR_IO;
    prv_fill(out, running, esp_app_get_description());
    return OTAML_OK;
}

otaml_status_t otaml_port_passive_slot_size(size_t *size)
{
    const esp_partition_t *next = esp_ota_get_next_update_partition(NULL);
    if (next == NULL) return OTAML_ERR_NOT_FOUND;
    *size = next->size;
    return OTAML_OK;
}

otaml_status_t otaml_port_update_begin(size_t image_size, size_t resume_offset)
{
    if (s_open) return OTAML_ERR_STATE;
    s_target = esp_ota_get_next_update_partition(NULL);
    if (s_target == NULL) return OTAML_ERR_NOT_FOUND;
    if (image_size > s_target->size || resume_offset > image_size) return OTAML_ERR_TOO_LARGE;
    /* Sequential writes erase each sector as the data reaches it, so a resumed download keeps what
     * an earlier attempt wrote. */
    esp_err_t err = resume_offset == 0
                        ? esp_ota_begin(s_target, OTA_WITH_SEQUENTIAL_WRITES, &s_handle)
                        : esp_ota_resume(s_target, OTA_WITH_SEQUENTIAL_WRITES, resume_offset, &s_handle);
    if (err == ESP_ERR_OTA_ROLLBACK_INVALID_STATE) return OTAML_ERR_STATE;
    if (err != ESP_OK) {
        ESP_LOGE(TAG, "%s %s: %s", resume_offset ? "esp_ota_resume" : "esp_ota_begin", s_target->label, esp_err_to_name(err));
        return OTAML_ERR_IO;
    }
    s_open = true;
    return OTAML_OK;
}

otaml_status_t otaml_port_update_write(const void *data, size_t len)
{
    if (!s_open) return OTAML_ERR_STATE;
    esp_err_t err = esp_ota_write(s_handle, data, len);
    if (err == ESP_OK) return OTAML_OK;
    ESP_LOGE(TAG, "esp_ota_write: %s", esp_err_to_name(err));
    return err == ESP_ERR_OTA_VALIDATE_FAILED ? OTAML_ERR_IMAGE : OTAML_ERR_IO;
}

otaml_status_t otaml_port_update_read(size_t offset, void *buf, size_t len)
{
    const esp_partition_t *part = s_target ? s_target : esp_ota_get_next_update_partition(NULL);
    if (part == NULL) return OTAML_ERR_NOT_FOUND;
    esp_err_t err = esp_partition_read(part, offset, buf, len);
    return err == ESP_OK ? OTAML_OK : OTAML_ERR_IO;
}

void otaml_port_update_abort(void)
{
    if (s_open) esp_ota_abort(s_handle);
    s_open = false;
}

otaml_status_t otaml_port_update_end(otaml_slot_info_t *info)
{
    if (!s_open) return OTAML_ERR_STATE;
    s_open = false;
    esp_err_t err = esp_ota_end(s_handle); /* runs esp_image_verify on the written image */
    if (err != ESP_OK) {
        ESP_LOGE(TAG, "esp_ota_end: %s", esp_err_to_name(err));
        return err == ESP_ERR_OTA_VALIDATE_FAILED ? OTAML_ERR_IMAGE : OTAML_ERR_IO;
    }
    esp_app_desc_t desc;
    err = esp_ota_get_partition_description(s_target, &desc);
    if (err != ESP_OK) return OTAML_ERR_IMAGE;
    prv_fill(info, s_target, &desc);
    return OTAML_OK;
}

otaml_status_t otaml_port_update_activate(void)
{
    esp_err_t err = esp_ota_set_boot_partition(s_target);
    if (err == ESP_OK) return OTAML_OK;
    ESP_LOGE(TAG, "esp_ota_set_boot_partition: %s", esp_err_to_name(err));
    return OTAML_ERR_IO;
}

otaml_status_t otaml_port_mark_valid(void)
{
    esp_err_t err = esp_ota_mark_app_valid_cancel_rollback();
    if (err == ESP_OK) return OTAML_OK;
    ESP_LOGE(TAG, "esp_ota_mark_app_valid_cancel_rollback: %s", esp_err_to_name(err));
    return OTAML_ERR_IO;
}

otaml_status_t otaml_port_mark_invalid_and_reboot(void)
{
    esp_err_t err = esp_ota_mark_app_invalid_rollback_and_reboot(); /* returns only on failure */
    ESP_LOGE(TAG, "esp_ota_mark_app_invalid_rollback_and_reboot: %s", esp_err_to_name(err));
    return err == ESP_ERR_OTA_ROLLBACK_FAILED ? OTAML_ERR_STATE : OTAML_ERR_IO;
}

void otaml_port_reboot(void)
{
    esp_restart();
}
