# otaml on MicroPython's esp32 port: the generic ESP32 with two OTA app slots, bootloader rollback,
# the project name and version in esp_app_desc_t, and the otaml package frozen in.
#   make -C ports/esp32 BOARD=OTAML_ESP32 BOARD_DIR=<repo>/firmware/micropython/board/OTAML_ESP32
set(IDF_TARGET esp32)

# What sdkconfig cannot say with a relative path or a file outside the port: this board's partition
# table, and the release version (firmware/micropython/version.txt) that becomes esp_app_desc_t.version.
file(STRINGS ${MICROPY_BOARD_DIR}/../../version.txt OTAML_VERSION LIMIT_COUNT 1)
set(OTAML_SDKCONFIG ${CMAKE_BINARY_DIR}/sdkconfig.otaml)
file(WRITE ${OTAML_SDKCONFIG}
    "CONFIG_PARTITION_TABLE_CUSTOM_FILENAME=\"${MICROPY_BOARD_DIR}/partitions-otaml.csv\"\n"
    "CONFIG_APP_PROJECT_VER=\"${OTAML_VERSION}\"\n")

set(SDKCONFIG_DEFAULTS
    boards/sdkconfig.base
    boards/sdkconfig.ble
    ${MICROPY_BOARD_DIR}/sdkconfig.board
    ${OTAML_SDKCONFIG}
)

set(MICROPY_FROZEN_MANIFEST ${MICROPY_BOARD_DIR}/manifest.py)
