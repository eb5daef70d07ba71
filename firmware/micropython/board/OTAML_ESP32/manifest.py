# Frozen into the OTAML_ESP32 build (MicroPython's makemanifest.py reads this file): the esp32 port's
# own modules, the otaml package, and the model package as a module of bytes (otaml_model: MODEL,
# CARD, SAMPLES) written by firmware/micropython/tools/gen_model_module.py before the build.
include("$(PORT_DIR)/boards/manifest.py")
package("otaml", base_path="$(BOARD_DIR)/../..", opt=3)
module("otaml_model.py", base_path="$(BOARD_DIR)/../../build-frozen", opt=3)
