// otaml on a generic ESP32 (4 MB flash, two OTA app slots).
#define MICROPY_HW_BOARD_NAME "otaml ESP32"
#define MICROPY_HW_MCU_NAME "ESP32"
