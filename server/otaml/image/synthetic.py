"""Genuine ESP-IDF app images without a cross compiler, for tests, test vectors and demos.

esptool's own image classes write the header, segments, checksum and appended SHA-256, so
``esptool image-info`` and the bootloader's checks accept the result. The first segment is flash-mapped
data at the DROM base + 0x20 carrying the esp_app_desc_t, as in an ESP-IDF build. ``payload`` becomes an
extra flash segment: the host simulator reads simulation directives from it (firmware/README.md, "otaml-sim").
"""

from __future__ import annotations

import hashlib
import struct

from otaml.image.app_image import APP_DESC_MAGIC, APP_DESC_SIZE

# Load addresses per chip family: (DROM app-desc address, IRAM text address, IROM text address).
_ADDRESSES = {
    "esp32": (0x3F400020, 0x40080000, 0x400D0020),
    "esp32c3": (0x3C000020, 0x40380000, 0x42000020),
}


def app_desc(version: str, project: str = "otaml", secure_version: int = 0, idf_ver: str = "v5.5.3") -> bytes:
    d = struct.pack("<II8s", APP_DESC_MAGIC, secure_version, b"")
    d += version.encode()[:31].ljust(32, b"\0") + project.encode()[:31].ljust(32, b"\0")
    d += b"12:00:00".ljust(16, b"\0") + b"Nov 22 2026".ljust(16, b"\0")
    d += idf_ver.encode().ljust(32, b"\0") + hashlib.sha256(f"{project}-{version}".encode()).digest()
    return d.ljust(APP_DESC_SIZE, b"\0")


def build_app_image(
    version: str,
    *,
    project: str = "otaml",
    secure_version: int = 0,
    chip: str = "esp32",
    payload: bytes = b"",
    code_size: int = 8192,
) -> bytes:
    from esptool.bin_image import ELFSection, LoadFirmwareImage  # noqa: F401 - registers image classes
    from esptool.bin_image import ESP32C3FirmwareImage, ESP32FirmwareImage

    image_cls = {"esp32": ESP32FirmwareImage, "esp32c3": ESP32C3FirmwareImage}[chip]
    drom, iram, irom = _ADDRESSES[chip]
    img = image_cls()
    rodata = app_desc(version, project, secure_version) + payload
    # Code bytes derived from the version so two builds never share bytes by accident.
    seed = hashlib.sha256(f"{chip}:{project}:{version}:{secure_version}".encode()).digest()
    code = (seed * (code_size // len(seed) + 1))[:code_size]
    img.segments = [
        ELFSection(b".flash.appdesc", drom, rodata, 0),
        ELFSection(b".iram0.text", iram, code[:1024], 0),
        ELFSection(b".flash.text", irom, code, 0),
    ]
    img.entrypoint = iram
    if hasattr(img, "chip_id"):
        img.chip_id = image_cls.ROM_LOADER.IMAGE_CHIP_ID
    return img.save(None)


def model_payload(tflite: bytes, card_json: bytes) -> bytes:
    """The model and its card as the simulator finds them inside an image (firmware/sim/otaml_sim.c):
    a marker, a little-endian u32 length, the bytes. On the device they are linked in the same way
    (EMBED_FILES), so a build with a corrupted model is a genuine, signed image that fails its
    golden self-test."""
    return (b"OTAML-MODEL:" + struct.pack("<I", len(tflite)) + tflite
            + b"OTAML-CARD:" + struct.pack("<I", len(card_json)) + card_json)
