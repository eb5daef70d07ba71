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


SIM_SYMBOLS = b"OTAML-SIM-SYMBOLS:"


def embedded_file(data: bytes, *, text: bool) -> bytes:
    """One file as ESP-IDF's EMBED_FILES / EMBED_TXTFILES rule lays it out in .rodata.embedded
    (tools/cmake/scripts/data_file_embed_asm.cmake): the bytes (``_binary_<name>_start`` up to
    ``_binary_<name>_end``), a NUL for a text file, then ``<name>_length`` as a 32-bit little-endian
    word (the length without the NUL)."""
    return data + (b"\0" if text else b"") + struct.pack("<I", len(data))


def model_payload(tflite: bytes, card_json: bytes, name: str = "amp_health") -> bytes:
    """The model and its card as a firmware build links them (firmware/main/CMakeLists.txt:
    EMBED_FILES ``<name>.tflite``, EMBED_TXTFILES ``<name>.card.json``), laid out the way ESP-IDF does,
    so `release publish` finds them in the image as in a real build.

    After them comes what the linker would give the firmware and a raw image does not carry: a symbol
    table for the simulator (``OTAML-SIM-SYMBOLS:``, a u32 count, then per symbol a NUL-padded 32-byte
    name, the u32 distance from the table back to the data and the u32 length), through which otaml-sim
    resolves ``_binary_<name>_tflite_start``/``_end`` like the device. The lengths are those of the bytes
    given, whatever the card says, so a build whose model and card disagree is a genuine, signed image
    whose self-test catches it."""
    blobs = [(f"{name}_tflite", embedded_file(tflite, text=False), len(tflite)),
             (f"{name}_card_json", embedded_file(card_json, text=True), len(card_json))]
    payload, starts = b"", []
    for _, blob, _ in blobs:
        starts.append(len(payload))
        payload += blob
    table = SIM_SYMBOLS + struct.pack("<I", len(blobs))
    for (symbol, _, length), start in zip(blobs, starts):
        table += symbol.encode().ljust(32, b"\0") + struct.pack("<II", len(payload) - start, length)
    return payload + table
