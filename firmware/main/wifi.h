#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "esp_err.h"

/**
 * Connect as a station to ssid with password (from NVS, else Kconfig: app_main.c) and wait for an IP address.
 * @return ESP_OK; ESP_ERR_TIMEOUT if no address within CONFIG_OTAML_WIFI_CONNECT_TIMEOUT_MS (the device
 *         keeps retrying in the background); errors of esp_wifi_init/start.
 */
esp_err_t wifi_connect(const char *ssid, const char *password);

/**
 * Wait until the station has an IP address, at most timeout_ms (at once if it has one). The rollback
 * gate waits here before each attempt to reach the server (otaml_port_network_wait).
 * @return true with an address; false on timeout, or before wifi_connect() ran.
 */
bool wifi_wait_ip(uint32_t timeout_ms);
