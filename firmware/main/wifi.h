#pragma once

#include "esp_err.h"

/**
 * Connect as a station with the Kconfig credentials and wait for an IP address.
 * @return ESP_OK; ESP_ERR_TIMEOUT if no address within CONFIG_OTAML_WIFI_CONNECT_TIMEOUT_MS (the device
 *         keeps retrying in the background); errors of esp_wifi_init/start.
 */
esp_err_t wifi_connect(void);
