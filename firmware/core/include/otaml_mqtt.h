/*
 * Predictions on MQTT (optional: Kconfig OTAML_MQTT). The ML task hands every prediction to a bounded
 * queue that never blocks it (when full, the oldest prediction is dropped and counted); a publisher
 * task drains the queue to `<prefix>/<device>/inference` with QoS 0 while the port's client is
 * connected. The broker URL, the topic prefix and on/off come from the signed desired configuration
 * (otaml_config.h), so the OTA task only posts them here; the publisher task does the (re)connecting.
 *
 * Nothing here touches the rollback gate: a device confirms or rolls back the same with the broker up,
 * down or switched off (manifests/README.md, "MQTT").
 */
#pragma once

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "otaml_config.h"
#include "otaml_ml.h"
#include "otaml_status.h"

#ifdef __cplusplus
extern "C" {
#endif

#define OTAML_MQTT_QUEUE_MAX 256      /* the most predictions a queue can hold (Kconfig OTAML_MQTT_QUEUE_LEN) */
#define OTAML_MQTT_MAX_TOPIC (OTAML_CONFIG_MAX_MQTT_PREFIX + 1 + OTAML_MAX_DEVICE_ID + 10)
#define OTAML_MQTT_MAX_PAYLOAD 448

typedef struct {
    uint32_t seq;        /* inference number since boot (0 for the first) */
    int8_t label;        /* index of the winning class in the card's labels */
    int8_t scores[OTAML_ML_MAX_LABELS]; /* the model's int8 outputs, in the card's label order */
    uint32_t latency_us; /* of this inference */
    uint64_t uptime_ms;  /* when it ran */
} otaml_prediction_t;

/* Single producer (the ML task), single consumer (the publisher task), lock-free. */
typedef struct {
    otaml_prediction_t slot[OTAML_MQTT_QUEUE_MAX];
    uint32_t capacity;
    atomic_uint head;    /* next slot the producer writes (counts up, never wraps in practice) */
    atomic_uint tail;    /* oldest slot not taken yet */
    atomic_uint dropped; /* predictions pushed out by newer ones while the queue was full */
} otaml_pred_queue_t;

/** An empty queue holding at most capacity predictions (clamped to 1..OTAML_MQTT_QUEUE_MAX). */
void otaml_pred_queue_init(otaml_pred_queue_t *q, uint32_t capacity);
/** Add a prediction; never waits: when the queue is full the oldest one is dropped (and counted). */
void otaml_pred_queue_push(otaml_pred_queue_t *q, const otaml_prediction_t *p);
/** Take the oldest prediction. @return false when the queue is empty. */
bool otaml_pred_queue_pop(otaml_pred_queue_t *q, otaml_prediction_t *out);
/** How many predictions wait (at most the capacity). */
uint32_t otaml_pred_queue_len(otaml_pred_queue_t *q);

/* Where to publish: from the desired configuration, else the build's defaults. */
typedef struct {
    bool enabled;
    char url[OTAML_CONFIG_MAX_MQTT_URL + 1];
    char prefix[OTAML_CONFIG_MAX_MQTT_PREFIX + 1];
} otaml_mqtt_target_t;

typedef struct {
    otaml_pred_queue_t queue;
    const otaml_ml_t *ml; /* labels and model id of the running model */
    char device_id[OTAML_MAX_DEVICE_ID + 1];
    otaml_mqtt_target_t defaults;
    /* posted by otaml_mqtt_configure (OTA task), read by otaml_mqtt_step (publisher task): two
     * buffers and a generation, so neither side ever waits for the other */
    otaml_mqtt_target_t posted[2];
    atomic_uint generation;
    atomic_bool enabled; /* read by the ML task: a switched-off publisher queues nothing */
    /* the publisher task's own */
    otaml_mqtt_target_t active;
    unsigned active_generation;
    bool started;
    bool was_connected;
    uint32_t logged_drops;
    uint32_t rounds, logged_round;
    atomic_uint published;
    atomic_uint failed; /* publishes the port refused while connected (counted as lost) */
    char topic[OTAML_MQTT_MAX_TOPIC + 1];
    char payload[OTAML_MQTT_MAX_PAYLOAD];
} otaml_mqtt_t;

/**
 * Set up the publisher. default_url / default_prefix: the build's (Kconfig OTAML_MQTT_BROKER_URL,
 * OTAML_MQTT_TOPIC_PREFIX), used until the desired configuration sets them; default_enabled: whether
 * it publishes before any configuration says so.
 * @return OTAML_OK, OTAML_ERR_INVALID_ARG (a default that the configuration rules would refuse).
 */
otaml_status_t otaml_mqtt_init(otaml_mqtt_t *m, const otaml_ml_t *ml, const char *device_id, uint32_t queue_len,
                               bool default_enabled, const char *default_url, const char *default_prefix);

/** Take the MQTT fields of an applied configuration (called from the config-apply callback of the OTA
 * task). Never blocks and never fails: the values were judged by otaml_config_verify. */
void otaml_mqtt_configure(otaml_mqtt_t *m, const otaml_config_t *cfg);

/** From the ML task after each inference: queues it if publishing is on. Never blocks. */
void otaml_mqtt_offer(otaml_mqtt_t *m, const otaml_prediction_t *p);

/**
 * One round of the publisher task: follow a changed target (stop the old client, start one for the new
 * URL with the credentials in NVS keys mqtt_user / mqtt_pass), then publish what the queue holds while
 * connected. @return milliseconds to wait before the next round.
 */
uint32_t otaml_mqtt_step(otaml_mqtt_t *m);

/** "otaml/devices/dev-1/inference" and its JSON payload for one prediction (the schema is
 * manifests/schemas/mqtt.schema.json, "inference"). @return OTAML_OK, OTAML_ERR_TOO_LARGE. */
otaml_status_t otaml_mqtt_format(otaml_mqtt_t *m, const otaml_prediction_t *p);

/** Split a URL the configuration rules accept ("mqtts://[::1]:8883") into host (brackets removed),
 * port (1883 / 8883 when absent) and TLS. @return OTAML_OK, OTAML_ERR_INVALID_ARG. */
otaml_status_t otaml_mqtt_url_split(const char *url, char *host, size_t host_size, int *port, bool *tls);

/** Stop the port's client (at shutdown). */
void otaml_mqtt_stop(otaml_mqtt_t *m);

#ifdef __cplusplus
}
#endif
