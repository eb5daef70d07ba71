"""Validate an ESP-IDF app image with esptool's parser and read its esp_app_desc_t.

An app image is: a 24-byte image header, segments, a checksum byte, and (for ESP32-family chips) a
SHA-256 digest of everything before it. The first segment is flash-mapped data starting with the
256-byte esp_app_desc_t (ESP-IDF components/esp_app_format/include/esp_app_desc.h).
"""

from __future__ import annotations

import contextlib
import io
import struct
from dataclasses import dataclass

from otaml.core.errors import ImageError

ESP_IMAGE_MAGIC = 0xE9
APP_DESC_MAGIC = 0xABCD5432
APP_DESC_SIZE = 256
# magic, secure_version, reserv1[2], version[32], project_name[32], time[16], date[16], idf_ver[32],
# app_elf_sha256[32]
_APP_DESC_FMT = "<II8s32s32s16s16s32s32s"


@dataclass(frozen=True)
class AppDescription:
    secure_version: int
    version: str
    project_name: str
    time: str
    date: str
    idf_ver: str
    app_elf_sha256: str


@dataclass(frozen=True)
class Segment:
    address: int  # load address (flash-mapped data: the DROM range)
    data: bytes


@dataclass(frozen=True)
class AppImage:
    chip: str
    size: int
    digest: str  # the appended SHA-256 (hex), as the bootloader checks it
    desc: AppDescription
    segments: tuple[Segment, ...] = ()


def _cstr(b: bytes) -> str:
    return b.split(b"\0", 1)[0].decode("utf-8", errors="replace")


def parse_app_desc(data: bytes) -> AppDescription:
    if len(data) < struct.calcsize(_APP_DESC_FMT):
        raise ImageError(f"expected a {APP_DESC_SIZE}-byte esp_app_desc_t, got {len(data)} bytes")
    magic, secure_version, _, version, project, t, d, idf, elf_sha = struct.unpack_from(_APP_DESC_FMT, data)
    if magic != APP_DESC_MAGIC:
        raise ImageError(f"expected esp_app_desc_t magic 0x{APP_DESC_MAGIC:08X}, got 0x{magic:08X}: not an app image")
    return AppDescription(
        secure_version=secure_version,
        version=_cstr(version),
        project_name=_cstr(project),
        time=_cstr(t),
        date=_cstr(d),
        idf_ver=_cstr(idf),
        app_elf_sha256=elf_sha.hex(),
    )


def _chip_name(chip_id: int) -> str:
    from esptool.targets import CHIP_DEFS

    for name, rom in CHIP_DEFS.items():
        if getattr(rom, "IMAGE_CHIP_ID", None) == chip_id:
            return name
    return "an unknown chip"


def load_app_image(data: bytes, chip: str) -> AppImage:
    """Parse and check ``data`` as an app image for ``chip``.

    Raises:
        ImageError: not an ESP image (magic), built for another chip, truncated, bad checksum, missing or
            wrong appended SHA-256, or no esp_app_desc_t at the start of the first segment.
    """
    # esptool logs through its own logger; keep a library call silent.
    from esptool.bin_image import LoadFirmwareImage
    from esptool.util import FatalError

    if not data:
        raise ImageError("expected an ESP app image, got an empty file")
    if data[0] != ESP_IMAGE_MAGIC:
        raise ImageError(f"expected an ESP app image (first byte 0x{ESP_IMAGE_MAGIC:02X}), got 0x{data[0]:02X}: not an ESP image")
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            image = LoadFirmwareImage(chip, data)
    except (FatalError, struct.error, ValueError, IndexError, EOFError) as e:
        raise ImageError(f"expected a well-formed {chip} app image: {e}") from None
    except KeyError:
        raise ImageError(f"unsupported chip {chip!r}") from None

    expected_chip_id = getattr(image.ROM_LOADER, "IMAGE_CHIP_ID", None)
    if expected_chip_id is not None and image.chip_id != expected_chip_id:
        raise ImageError(
            f"expected an image for {chip} (chip id {expected_chip_id}), got one for "
            f"{_chip_name(image.chip_id)} (chip id {image.chip_id})"
        )
    if image.checksum != image.calculate_checksum():
        raise ImageError(
            f"image checksum mismatch: header says 0x{image.checksum:02x}, segments give 0x{image.calculate_checksum():02x}"
        )
    if not getattr(image, "append_digest", False):
        raise ImageError("expected an appended SHA-256 digest (the bootloader checks it), the image has none")
    if len(image.stored_digest) != 32 or image.stored_digest != image.calc_digest:
        raise ImageError(
            f"appended SHA-256 mismatch: stored {image.stored_digest.hex() or 'nothing'}, computed {image.calc_digest.hex()}"
        )
    if not image.segments:
        raise ImageError("expected at least one segment, the image has none")
    desc = parse_app_desc(image.segments[0].data)
    segments = tuple(Segment(s.addr, bytes(s.data)) for s in image.segments)
    return AppImage(chip=chip, size=len(data), digest=image.stored_digest.hex(), desc=desc, segments=segments)
