/*
 * The MQTT publisher task (Kconfig OTAML_MQTT, off by default): takes the ML task's predictions from
 * a bounded queue and publishes them with QoS 0 to `<prefix>/<device>/inference` (otaml_mqtt.h).
 * Started after the rollback gate, below the OTA task's priority: a broker that is away or slow
 * costs predictions on the stream (dropped oldest first, counted), never an inference, a poll or a
 * confirmation. Without CONFIG_OTAML_MQTT these functions do nothing.
 */
#pragma once

#include "esp_err.h"
#include "otaml_config.h"
#include "otaml_ml.h"
#include "otaml_mqtt.h"

/** Set up the queue and the publisher (before the agent applies the stored configuration).
 * @return ESP_OK, ESP_ERR_INVALID_ARG (a Kconfig default breaks the configuration rules). */
esp_err_t mqtt_task_init(const otaml_ml_t *ml, const char *device_id);

/** The MQTT fields of an applied desired configuration (from the config-apply callback). */
void mqtt_task_configure(const otaml_config_t *config);

/** From the ML task: one prediction. Never blocks. */
void mqtt_task_offer(const otaml_prediction_t *prediction);

/** Start the publisher task. @return ESP_OK, ESP_ERR_INVALID_STATE (not initialized), ESP_ERR_NO_MEM. */
esp_err_t mqtt_task_start(void);
