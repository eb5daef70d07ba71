/* Set-up of the ESP-IDF port that the portable port header cannot express. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

/** Blocks until the device has an IP address or timeout_ms passed; true when it has one. */
typedef bool (*otaml_port_esp_idf_ip_wait_fn)(uint32_t timeout_ms);

/**
 * @param server_ca_pem the CA certificate (PEM) pinned for the release server's TLS, unless
 *        CONFIG_OTAML_USE_CERT_BUNDLE.
 * @param ip_wait how otaml_port_network_wait() waits for an address (the app's Wi-Fi or Ethernet
 *        event group); NULL: the network is taken as up.
 */
void otaml_port_esp_idf_init(const char *server_ca_pem, otaml_port_esp_idf_ip_wait_fn ip_wait);
