"""NVS partition images for the firmware's namespace ``otaml``, made by ESP-IDF's own generator
(esp-idf-nvs-partition-gen, the library `nvs_partition_gen.py generate` runs), sized and placed by the
partition table the firmware is built with (firmware/partitions.csv).

Keys the firmware reads (firmware/main/identity.c, Kconfig values as fallbacks): device_id, token, claim
(a fleet claim token instead of a token), server_url, channel, wifi_ssid, wifi_pass. Keys are at most
15 characters; string values at most 4000 bytes (one NVS page)."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

from otaml.core.errors import ConfigError

NAMESPACE = "otaml"
MAX_STRING = 4000
NVS_KEYS = ("device_id", "token", "claim", "server_url", "channel", "wifi_ssid", "wifi_pass")


@dataclass(frozen=True)
class Partition:
    name: str
    offset: int
    size: int


def _number(text: str) -> int:
    text = text.strip()
    scale = 1
    if text[-1:] in ("K", "k"):
        text, scale = text[:-1], 1024
    elif text[-1:] in ("M", "m"):
        text, scale = text[:-1], 1024 * 1024
    return int(text, 0) * scale


def nvs_partition(table: Path, name: str = "nvs") -> Partition:
    """Offset and size of the data/nvs partition ``name`` of an ESP-IDF partitions.csv (offsets filled
    in as gen_esp32part.py does: after the table at 0x8000, each partition after the previous one)."""
    try:
        text = Path(table).read_text()
    except OSError as e:
        raise ConfigError(f"cannot read partition table {table}: {e.strerror}") from None
    next_offset = 0x9000
    for row in csv.reader(io.StringIO(text)):
        fields = [f.strip() for f in row]
        if not fields or not fields[0] or fields[0].startswith("#") or len(fields) < 5:
            continue
        label, ptype, subtype, offset, size = fields[:5]
        try:
            start = _number(offset) if offset else next_offset
            length = _number(size)
        except ValueError:
            raise ConfigError(f"partition table {table}: cannot read offset/size of {label!r}") from None
        next_offset = start + length
        if label == name:
            if (ptype, subtype) != ("data", "nvs"):
                raise ConfigError(f"partition {name!r} of {table} is {ptype}/{subtype}, expected data/nvs")
            if length % 4096 or length < 3 * 4096:
                raise ConfigError(f"partition {name!r} of {table} is {length} bytes; NVS needs a multiple of 4096, at least 0x3000")
            return Partition(name, start, length)
    raise ConfigError(f"expected a data/nvs partition named {name!r} in {table}, found none")


def image(values: dict[str, str], size: int) -> bytes:
    """An NVS partition image of ``size`` bytes holding ``values`` as strings in namespace otaml."""
    from esp_idf_nvs_partition_gen import nvs_partition_gen as gen

    for key, value in values.items():
        if len(key) > 15:
            raise ConfigError(f"NVS key {key!r}: expected at most 15 characters")
        if "\x00" in value or len(value.encode()) + 1 > MAX_STRING:
            raise ConfigError(f"NVS value of {key!r}: expected text without NUL of at most {MAX_STRING - 1} bytes")
    out = io.BytesIO()
    # The generator keeps the last page free for NVS's garbage collection (as `generate` does).
    nvs = gen.nvs_open(out, size - 4096, gen.Page.VERSION2)
    gen.write_entry(nvs, NAMESPACE, "namespace", "", "")
    for key, value in values.items():
        gen.write_entry(nvs, key, "data", "string", value)
    gen.nvs_close(nvs)
    data = out.getvalue()
    if len(data) != size:
        raise ConfigError(f"the NVS generator made {len(data)} bytes, expected {size}")
    return data
