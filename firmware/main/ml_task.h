/*
 * The ML task: runs inference on sensor input in its own FreeRTOS task, never blocked by the OTA task.
 * The model, its op resolver and the per-class counters arrive with the ML work (see issue "ML on the
 * device"); this file fixes the task's place in the architecture and its health-check contract.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "esp_err.h"

/**
 * Health check for the rollback gate, run before the task starts: the model loads, its arena fits and
 * golden inputs give the expected outputs. Says why in detail on failure.
 */
bool ml_health_check(char *detail, size_t detail_size);

/** Start the ML task. @return ESP_OK, ESP_ERR_NO_MEM (task could not be created). */
esp_err_t ml_task_start(void);
