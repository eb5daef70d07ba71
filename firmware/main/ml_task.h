/*
 * The ML task: the amplifier-health model (firmware/model, linked into the image) runs on sensor
 * samples every CONFIG_OTAML_ML_INTERVAL_MS (or the server's desired ml_interval_ms) in its own FreeRTOS task; its per-class counters and latency
 * go out with the OTA task's check-ins.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "esp_err.h"
#include "otaml_config.h"
#include "otaml_ml.h"

/**
 * Load the model and the recorded sensor samples (the sensor port replays them: real ADC or Modbus
 * input is out of scope). @return ESP_OK; ESP_ERR_INVALID_STATE (card, model or samples unusable:
 * the health check then fails).
 */
esp_err_t ml_task_init(void);

/** Health check for the rollback gate: the model loaded, the arena fits, the golden inputs give the
 * card's outputs. Says why in detail on failure. */
bool ml_health_check(char *detail, size_t detail_size);

/** The ML state the OTA task reports with check-ins (otaml_ml_checkin_headers). */
otaml_ml_t *ml_task_state(void);

/** Desired configuration (otaml_config_apply_fn): inference interval and alert threshold. Takes
 * effect at the next inference; never refuses (the core already range-checked the values). */
bool ml_task_apply_config(void *ctx, const otaml_config_t *config);

/** Start the ML task. @return ESP_OK, ESP_ERR_INVALID_STATE (not initialized), ESP_ERR_NO_MEM. */
esp_err_t ml_task_start(void);
