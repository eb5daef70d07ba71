/*
 * ESP-IDF port of the MQTT functions: ESP-IDF's MQTT client (esp-mqtt), whose own task connects,
 * reconnects (CONFIG_OTAML_MQTT_RECONNECT_MS) and owns the socket. mqtts:// pins the CA the device
 * pins for the release server (main/certs/server_ca.pem), or the certificate bundle when
 * CONFIG_OTAML_USE_CERT_BUNDLE is set. Credentials come from NVS (mqtt_user, mqtt_pass), passed in by
 * the core. Without CONFIG_OTAML_MQTT every function refuses and nothing of esp-mqtt is linked.
 */
#include <stdatomic.h>
#include <string.h>

#include "sdkconfig.h"

#include "otaml_port.h"

static const char *TAG = "port_mqtt";

#if CONFIG_OTAML_MQTT
#include "esp_crt_bundle.h"
#include "mqtt_client.h"

extern const char server_ca_pem_start[] asm("_binary_server_ca_pem_start");

static esp_mqtt_client_handle_t s_client;
static atomic_bool s_connected;

static void prv_event(void *arg, esp_event_base_t base, int32_t id, void *data)
{
    (void)arg, (void)base, (void)data;
    if (id == MQTT_EVENT_CONNECTED) atomic_store(&s_connected, true);
    else if (id == MQTT_EVENT_DISCONNECTED) atomic_store(&s_connected, false);
}

otaml_status_t otaml_port_mqtt_start(const otaml_mqtt_conn_t *conn)
{
    if (s_client != NULL) return OTAML_ERR_STATE;
    esp_mqtt_client_config_t cfg = {
        .broker.address.uri = conn->url, /* mqtt:// or mqtts://, judged by otaml_config.c */
#if CONFIG_OTAML_USE_CERT_BUNDLE
        .broker.verification.crt_bundle_attach = esp_crt_bundle_attach,
#else
        .broker.verification.certificate = server_ca_pem_start,
#endif
        .credentials.client_id = conn->client_id,
        .credentials.username = conn->username,
        .credentials.authentication.password = conn->password,
        .network.reconnect_timeout_ms = CONFIG_OTAML_MQTT_RECONNECT_MS,
        .network.timeout_ms = CONFIG_OTAML_MQTT_NETWORK_TIMEOUT_MS,
        .task.stack_size = CONFIG_OTAML_MQTT_CLIENT_STACK,
    };
    s_client = esp_mqtt_client_init(&cfg);
    if (s_client == NULL) return OTAML_ERR_NO_MEM;
    esp_err_t err = esp_mqtt_client_register_event(s_client, MQTT_EVENT_ANY, prv_event, NULL);
    if (err == ESP_OK) err = esp_mqtt_client_start(s_client);
    if (err != ESP_OK) {
        OTAML_LOGE(TAG, "esp_mqtt_client_start: %s", esp_err_to_name(err));
        esp_mqtt_client_destroy(s_client);
        s_client = NULL;
        return OTAML_ERR_NO_MEM;
    }
    return OTAML_OK;
}

bool otaml_port_mqtt_connected(void) { return s_client != NULL && atomic_load(&s_connected); }

otaml_status_t otaml_port_mqtt_publish(const char *topic, const char *payload, size_t len)
{
    if (!otaml_port_mqtt_connected()) return OTAML_ERR_TRANSPORT;
    /* QoS 0, not retained; may block up to the network timeout, in the publisher task only */
    int id = esp_mqtt_client_publish(s_client, topic, payload, (int)len, 0, 0);
    return id < 0 ? OTAML_ERR_TRANSPORT : OTAML_OK;
}

void otaml_port_mqtt_stop(void)
{
    if (s_client == NULL) return;
    esp_mqtt_client_stop(s_client);
    esp_mqtt_client_destroy(s_client);
    s_client = NULL;
    atomic_store(&s_connected, false);
}

#else /* CONFIG_OTAML_MQTT off */

otaml_status_t otaml_port_mqtt_start(const otaml_mqtt_conn_t *conn)
{
    (void)conn;
    OTAML_LOGW(TAG, "built without CONFIG_OTAML_MQTT: predictions are not published");
    return OTAML_ERR_STATE;
}

bool otaml_port_mqtt_connected(void) { return false; }

otaml_status_t otaml_port_mqtt_publish(const char *topic, const char *payload, size_t len)
{
    (void)topic, (void)payload, (void)len;
    return OTAML_ERR_STATE;
}

void otaml_port_mqtt_stop(void) {}

#endif
