#pragma once

#include "esp_err.h"
#include "otaml_agent.h"

/** Start the OTA task polling with agent (which must outlive it). @return ESP_OK, ESP_ERR_NO_MEM. */
esp_err_t ota_task_start(otaml_agent_t *agent);
