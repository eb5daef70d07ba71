"""Publish-time image validation with esptool's parser."""

import hashlib

import pytest

from otaml.core.errors import ImageError
from otaml.image.app_image import load_app_image
from otaml.image.synthetic import build_app_image


def test_genuine_image_is_read():
    data = build_app_image("1.2", secure_version=4)
    image = load_app_image(data, "esp32")
    assert image.desc.version == "1.2" and image.desc.project_name == "otaml" and image.desc.secure_version == 4
    assert image.size == len(data) and image.digest == hashlib.sha256(data[:-32]).hexdigest()


def test_esptool_cli_agrees(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    path = tmp_path / "a.bin"
    path.write_bytes(build_app_image("1.2"))
    out = subprocess.run([str(Path(sys.executable).with_name("esptool")), "--chip", "esp32", "image-info", str(path)],
                         capture_output=True, text=True, check=True).stdout
    assert "Checksum: " in out and "(valid)" in out and "App version: 1.2" in out


def corrupt(data: bytes, offset: int) -> bytes:
    b = bytearray(data)
    b[offset] ^= 0xFF
    return bytes(b)


@pytest.mark.parametrize("mutate,message", [
    (lambda d: b"", "empty file"),
    (lambda d: b"PK\x03\x04" + d[4:], "not an ESP image"),
    (lambda d: d[: len(d) // 2], "well-formed"),
    (lambda d: corrupt(d, len(d) - 1), "appended SHA-256 mismatch"),
    (lambda d: corrupt(d, 0x30), "checksum mismatch"),
    (lambda d: corrupt(d, 0x20), "checksum mismatch"),
])
def test_refusals(mutate, message):
    with pytest.raises(ImageError, match=message):
        load_app_image(mutate(build_app_image("1.2")), "esp32")


def test_checksum_is_checked_when_digest_would_match():
    data = bytearray(build_app_image("1.2"))
    # Flip a payload byte and re-append a matching digest: only the XOR checksum can catch it.
    data[0x30] ^= 0x01
    body = bytes(data[:-32])
    with pytest.raises(ImageError, match="checksum mismatch"):
        load_app_image(body + hashlib.sha256(body).digest(), "esp32")


def test_missing_app_description():
    from esptool.bin_image import ELFSection, ESP32FirmwareImage

    img = ESP32FirmwareImage()
    img.segments = [ELFSection(b".flash.rodata", 0x3F400020, b"\0" * 256, 0)]
    img.entrypoint = 0x40080000
    with pytest.raises(ImageError, match="esp_app_desc_t magic"):
        load_app_image(img.save(None), "esp32")


def test_wrong_chip():
    with pytest.raises(ImageError, match="got one for esp32c3"):
        load_app_image(build_app_image("1.2", chip="esp32c3"), "esp32")
    assert load_app_image(build_app_image("1.2", chip="esp32c3"), "esp32c3").chip == "esp32c3"
