/*
 * The POSIX port's MQTT client: libmosquitto with its own network thread (mosquitto_loop_start), which
 * connects and reconnects with a backoff of 1 to 30 s; a publish never waits for the network (QoS 0 is
 * written to the socket or refused). Built without libmosquitto (CMake found none), the simulator
 * says so and publishes nothing.
 */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "otaml_mqtt.h"
#include "otaml_port.h"

static const char *TAG = "sim_mqtt";

#ifdef OTAML_HAVE_MOSQUITTO
#include <mosquitto.h>

static struct mosquitto *s_mosq;
static atomic_bool s_connected;

static void prv_on_connect(struct mosquitto *mosq, void *obj, int rc)
{
    (void)mosq, (void)obj;
    if (rc != 0) OTAML_LOGW(TAG, "broker refused the connection: %s", mosquitto_connack_string(rc));
    atomic_store(&s_connected, rc == 0);
}

static void prv_on_disconnect(struct mosquitto *mosq, void *obj, int rc)
{
    (void)mosq, (void)obj, (void)rc;
    atomic_store(&s_connected, false);
}

otaml_status_t otaml_port_mqtt_start(const otaml_mqtt_conn_t *conn)
{
    char host[OTAML_CONFIG_MAX_MQTT_URL + 1];
    int port;
    bool tls;
    if (s_mosq != NULL) return OTAML_ERR_STATE;
    if (otaml_mqtt_url_split(conn->url, host, sizeof(host), &port, &tls) != OTAML_OK) return OTAML_ERR_INVALID_ARG;
    mosquitto_lib_init();
    s_mosq = mosquitto_new(conn->client_id, true, NULL);
    if (s_mosq == NULL) return OTAML_ERR_NO_MEM;
    mosquitto_connect_callback_set(s_mosq, prv_on_connect);
    mosquitto_disconnect_callback_set(s_mosq, prv_on_disconnect);
    mosquitto_reconnect_delay_set(s_mosq, 1, 30, true);
    if (conn->username != NULL) mosquitto_username_pw_set(s_mosq, conn->username, conn->password);
    if (tls) {
        /* the pinned CA: OTAML_SIM_MQTT_CA names a PEM file (the device embeds its CA in the image) */
        const char *ca = getenv("OTAML_SIM_MQTT_CA");
        if (ca == NULL || mosquitto_tls_set(s_mosq, ca, NULL, NULL, NULL, NULL) != MOSQ_ERR_SUCCESS) {
            OTAML_LOGE(TAG, "mqtts needs a CA file in OTAML_SIM_MQTT_CA");
            otaml_port_mqtt_stop();
            return OTAML_ERR_INVALID_ARG;
        }
    }
    /* A broker that is down now is not an error: the network thread keeps trying. */
    int rc = mosquitto_connect_async(s_mosq, host, port, 30);
    if (rc != MOSQ_ERR_SUCCESS) OTAML_LOGW(TAG, "broker %s:%d not reachable yet: %s", host, port, mosquitto_strerror(rc));
    if (mosquitto_loop_start(s_mosq) != MOSQ_ERR_SUCCESS) {
        otaml_port_mqtt_stop();
        return OTAML_ERR_NO_MEM;
    }
    return OTAML_OK;
}

bool otaml_port_mqtt_connected(void) { return s_mosq != NULL && atomic_load(&s_connected); }

otaml_status_t otaml_port_mqtt_publish(const char *topic, const char *payload, size_t len)
{
    if (!otaml_port_mqtt_connected()) return OTAML_ERR_TRANSPORT;
    int rc = mosquitto_publish(s_mosq, NULL, topic, (int)len, payload, 0, false);
    return rc == MOSQ_ERR_SUCCESS ? OTAML_OK : OTAML_ERR_TRANSPORT;
}

void otaml_port_mqtt_stop(void)
{
    if (s_mosq == NULL) return;
    mosquitto_disconnect(s_mosq);
    mosquitto_loop_stop(s_mosq, true);
    mosquitto_destroy(s_mosq);
    s_mosq = NULL;
    atomic_store(&s_connected, false);
    mosquitto_lib_cleanup();
}

#else /* built without libmosquitto */

otaml_status_t otaml_port_mqtt_start(const otaml_mqtt_conn_t *conn)
{
    (void)conn;
    OTAML_LOGE(TAG, "this simulator was built without libmosquitto (apt-get install libmosquitto-dev, rebuild)");
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
