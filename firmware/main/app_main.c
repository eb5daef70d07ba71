/*
 * otaml firmware: boot setup, the rollback gate, then the ML task and the OTA task.
 *
 * The gate runs before anything else can depend on the new image: a build that fails the ML health
 * check, or whose check-in the release server refuses, rolls back at once; one that hears nothing from
 * the server within CONFIG_OTAML_CONFIRM_WINDOW_S (waiting for Wi-Fi and retrying with backoff) rolls
 * back as server_unreachable, and may be taken again later (CONFIG_OTAML_UNREACHABLE_RETAKES).
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "esp_app_desc.h"
#include "esp_event.h"
#include "esp_log.h"
#include "esp_mac.h"
#include "esp_netif.h"
#include "esp_netif_sntp.h"
#include "esp_ota_ops.h"
#include "nvs.h"
#include "nvs_flash.h"
#include "sdkconfig.h"

#include "ml_task.h"
#include "mqtt_task.h"
#include "ota_task.h"
#include "otaml_agent.h"
#include "otaml_port_esp_idf.h"
#include "wifi.h"

static const char *TAG = "otaml_main";

extern const char manifest_pub_pem_start[] asm("_binary_manifest_pub_pem_start");
extern const char config_pub_pem_start[] asm("_binary_config_pub_pem_start");
extern const char server_ca_pem_start[] asm("_binary_server_ca_pem_start");

static otaml_keyring_t s_keyring;
static otaml_keyring_t s_config_keyring; /* the server's online key: desired configuration only */
static otaml_agent_t s_agent;
/* Identity and where to reach: NVS namespace "otaml" (written by `release provision`), else Kconfig, so one
 * build serves a whole fleet. */
static char s_device_id[OTAML_MAX_DEVICE_ID + 1];
static char s_token[OTAML_MAX_TOKEN + 1];
static char s_claim[OTAML_MAX_TOKEN + 1];
static char s_server_url[OTAML_MAX_URL + 1];
static char s_channel[33];
static char s_wifi_ssid[33];
static char s_wifi_pass[65];

static bool prv_selftest(void *ctx, char *detail, size_t size)
{
    (void)ctx;
    return ml_health_check(detail, size);
}

static void prv_setting(const char *key, const char *fallback, char *out, size_t size)
{
    if (otaml_port_store_get_str(key, out, size) != OTAML_OK) snprintf(out, size, "%s", fallback);
}

/* Identity: NVS (provisioned at the factory) first, then Kconfig, then the MAC for the id. */
static void prv_identity(void)
{
    prv_setting("server_url", CONFIG_OTAML_SERVER_URL, s_server_url, sizeof(s_server_url));
    prv_setting("channel", CONFIG_OTAML_CHANNEL, s_channel, sizeof(s_channel));
    prv_setting("wifi_ssid", CONFIG_OTAML_WIFI_SSID, s_wifi_ssid, sizeof(s_wifi_ssid));
    prv_setting("wifi_pass", CONFIG_OTAML_WIFI_PASSWORD, s_wifi_pass, sizeof(s_wifi_pass));
    prv_setting("claim", CONFIG_OTAML_CLAIM_TOKEN, s_claim, sizeof(s_claim));
    if (otaml_port_store_get_str("device_id", s_device_id, sizeof(s_device_id)) != OTAML_OK) {
        if (strlen(CONFIG_OTAML_DEVICE_ID) > 0) {
            snprintf(s_device_id, sizeof(s_device_id), "%s", CONFIG_OTAML_DEVICE_ID);
        } else {
            uint8_t mac[6];
            esp_read_mac(mac, ESP_MAC_WIFI_STA);
            snprintf(s_device_id, sizeof(s_device_id), "otaml-%02x%02x%02x%02x%02x%02x", mac[0], mac[1], mac[2],
                     mac[3], mac[4], mac[5]);
        }
    }
    if (otaml_port_store_get_str("token", s_token, sizeof(s_token)) != OTAML_OK) {
        snprintf(s_token, sizeof(s_token), "%s", CONFIG_OTAML_DEVICE_TOKEN);
    }
    if (s_token[0] == '\0' && s_claim[0] == '\0') {
        ESP_LOGW(TAG, "no device token and no claim token: the server will refuse %s's check-ins", s_device_id);
    }
}

void app_main(void)
{
    /* Boot setup: failures here leave nothing to run, so they abort (and, while pending verification,
     * the reset makes the bootloader roll back). */
    esp_err_t err = nvs_flash_init();
    if (err == ESP_ERR_NVS_NO_FREE_PAGES || err == ESP_ERR_NVS_NEW_VERSION_FOUND) {
        ESP_ERROR_CHECK(nvs_flash_erase());
        err = nvs_flash_init();
    }
    ESP_ERROR_CHECK(err);
    ESP_ERROR_CHECK(esp_netif_init());
    ESP_ERROR_CHECK(esp_event_loop_create_default());
    otaml_port_esp_idf_init(server_ca_pem_start, wifi_wait_ip);

    const esp_app_desc_t *app = esp_app_get_description();
    ESP_LOGI(TAG, "%s %s (secure_version %" PRIu32 ", ESP-IDF %s)", app->project_name, app->version,
             app->secure_version, app->idf_ver);

    prv_identity(); /* NVS is up: Wi-Fi credentials may come from it */
    err = wifi_connect(s_wifi_ssid, s_wifi_pass);
    if (err != ESP_OK) ESP_LOGW(TAG, "no network yet: %s", esp_err_to_name(err));
    esp_sntp_config_t sntp = ESP_NETIF_SNTP_DEFAULT_CONFIG(CONFIG_OTAML_SNTP_SERVER);
    esp_netif_sntp_init(&sntp);
    if (esp_netif_sntp_sync_wait(pdMS_TO_TICKS(CONFIG_OTAML_SNTP_WAIT_MS)) != ESP_OK) {
        ESP_LOGW(TAG, "time not synchronized yet: manifest expiry is judged once it is");
    }

    err = ml_task_init();
    if (err != ESP_OK) ESP_LOGE(TAG, "ML model unusable (%s): the self-test will fail", esp_err_to_name(err));
    /* Before the agent applies the stored configuration (which may switch publishing on); the task
     * itself starts after the rollback gate, so MQTT never takes part in confirming an image. */
    if (mqtt_task_init(ml_task_state(), s_device_id) != ESP_OK) ESP_LOGE(TAG, "MQTT defaults refused: not publishing");
    const char *pems[] = {manifest_pub_pem_start};
    otaml_status_t st = otaml_keyring_init(&s_keyring, pems, 1);
    if (st != OTAML_OK) {
        ESP_LOGE(TAG, "embedded manifest key unusable (%s): updates disabled", otaml_status_to_str(st));
        if (ml_task_start() != ESP_OK) ESP_LOGE(TAG, "ML task not started");
        return;
    }
    const char *config_pems[] = {config_pub_pem_start};
    bool config_ok = otaml_keyring_init(&s_config_keyring, config_pems, 1) == OTAML_OK;
    if (!config_ok) ESP_LOGW(TAG, "embedded config key unusable: desired configuration disabled");
    otaml_agent_config_t cfg = {
        .server_url = s_server_url,
        .channel = s_channel,
        .device_id = s_device_id,
        .token = s_token,
        .claim_token = s_claim[0] ? s_claim : NULL,
        .keyset_version = CONFIG_OTAML_KEYSET_VERSION,
        .project = app->project_name,
        .chip = CONFIG_IDF_TARGET,
        .keyring = &s_keyring,
        .selftest = prv_selftest,
        .checkin_extra = otaml_ml_checkin_headers,
        .checkin_extra_ctx = ml_task_state(),
        .config_keyring = config_ok ? &s_config_keyring : NULL,
        .config_apply = ml_task_apply_config,
        .default_poll_interval_s = CONFIG_OTAML_POLL_INTERVAL_S,
        .min_poll_interval_s = CONFIG_OTAML_MIN_POLL_INTERVAL_S,
        .confirm_window_s = CONFIG_OTAML_CONFIRM_WINDOW_S,
        .confirm_backoff_min_ms = CONFIG_OTAML_CONFIRM_BACKOFF_MIN_MS,
        .confirm_backoff_max_ms = CONFIG_OTAML_CONFIRM_BACKOFF_MAX_MS,
        .unreachable_retakes = CONFIG_OTAML_UNREACHABLE_RETAKES,
        .progress_min_bytes = CONFIG_OTAML_DOWNLOAD_PROGRESS_MIN_BYTES,
    };
    st = otaml_agent_init(&s_agent, &cfg);
    /* The rollback gate: confirms or rolls back a new image; does not return when rolling back. */
    if (st == OTAML_OK) st = otaml_agent_boot(&s_agent);
    if (st != OTAML_OK) ESP_LOGE(TAG, "OTA agent: %s", otaml_status_to_str(st));

    /* Reached only with a confirmed (or never-updated) image. A task that cannot start is logged, not
     * fatal: the OTA task must keep running so a fixed build can still arrive. */
    err = ml_task_start();
    if (err != ESP_OK) ESP_LOGE(TAG, "ML task not started: %s", esp_err_to_name(err));
    err = mqtt_task_start();
    if (err != ESP_OK && err != ESP_ERR_INVALID_STATE) ESP_LOGE(TAG, "MQTT task not started: %s", esp_err_to_name(err));
    if (st == OTAML_OK) ESP_ERROR_CHECK(ota_task_start(&s_agent));
}
