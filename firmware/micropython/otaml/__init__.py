"""otaml for MicroPython: the device side of the otaml protocol (manifests/README.md).

The same structure as the C core (firmware/core): protocol, version, manifest (verify, parse), policy
(the ordered device checks), download (hash and size guard), config (desired-config documents), agent
(rollback gate, poll, install), ml (the card's int8 model with TFLM's reference kernels). The platform
sits behind narrow adapters: otaml.device (socket/ssl, esp32.Partition, NVS) on an ESP32, and
firmware/micropython/host/otaml_host.py (js.fetch, a flash file with otaml-sim's layout) in the
WebAssembly MicroPython under Node.
"""
