/* Set-up of the ESP-IDF port that the portable port header cannot express. */
#pragma once

/** The CA certificate (PEM) pinned for the release server's TLS, unless CONFIG_OTAML_USE_CERT_BUNDLE. */
void otaml_port_esp_idf_init(const char *server_ca_pem);
