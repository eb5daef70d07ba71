"""`release provision`: read a device list, enroll every device in one request (all or nothing), write
one NVS partition image per device (0600, in a 0700 folder) and an index of ids and flash commands.
Tokens go only into the images: never to the terminal, the index or a log."""

from __future__ import annotations

import csv
import os
import shlex
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from otaml.core.errors import ConfigError
from otaml.core.types import CHANNEL, DEVICE_ID, TAG, shown
from otaml.provision import nvs

COLUMNS = ("device_id", "wifi_ssid", "wifi_password", "server_url", "channel", "tags")
MAX_ROWS = 10_000


@dataclass
class Row:
    device_id: str
    wifi_ssid: str = ""
    wifi_password: str = ""
    server_url: str = ""
    channel: str = ""
    tags: list[str] = field(default_factory=list)


def _check_row(row: Row, where: str) -> Row:
    if not DEVICE_ID.ok(row.device_id):
        raise ConfigError(f"{where}: device_id: expected {DEVICE_ID.expected}, got {shown(row.device_id)}")
    if row.channel and not CHANNEL.ok(row.channel):
        raise ConfigError(f"{where}: channel: expected {CHANNEL.expected}, got {shown(row.channel)}")
    for tag in row.tags:
        if not TAG.ok(tag):
            raise ConfigError(f"{where}: tags: expected {TAG.expected} (separate tags with ';' or spaces), got {shown(tag)}")
    if row.server_url and not row.server_url.startswith(("http://", "https://")) or len(row.server_url) > 200:
        raise ConfigError(f"{where}: server_url: expected an http(s) URL of at most 200 characters, got {shown(row.server_url)}")
    if len(row.wifi_ssid.encode()) > 32:
        raise ConfigError(f"{where}: wifi_ssid: expected at most 32 bytes (802.11), got {len(row.wifi_ssid.encode())}")
    if row.wifi_password and not 8 <= len(row.wifi_password.encode()) <= 64:
        raise ConfigError(f"{where}: wifi_password: expected 8 to 64 bytes (WPA2), got {len(row.wifi_password.encode())}")
    return row


def read_csv(path: Path) -> list[Row]:
    """Rows of a provisioning CSV with a header line: device_id, and optionally wifi_ssid, wifi_password,
    server_url, channel, tags (';' or space separated). Unknown columns and duplicate ids are refused."""
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"cannot read {path}: {getattr(e, 'strerror', None) or e}") from None
    reader = csv.DictReader(text.splitlines())
    header = reader.fieldnames or []
    unknown = [c for c in header if c not in COLUMNS]
    if "device_id" not in header or unknown:
        raise ConfigError(f"{path}: expected a header with device_id and any of {', '.join(COLUMNS[1:])}, got {', '.join(header) or 'none'}")
    rows: list[Row] = []
    seen: set[str] = set()
    for n, rec in enumerate(reader, start=2):
        if None in rec:
            raise ConfigError(f"{path}:{n}: more fields than the header names")
        values = {k: (v or "").strip() for k, v in rec.items()}
        tags = [t for t in values.pop("tags", "").replace(";", " ").split() if t]
        row = _check_row(Row(values.pop("device_id"), tags=tags, **{k: v for k, v in values.items()}), f"{path}:{n}")
        if row.device_id in seen:
            raise ConfigError(f"{path}:{n}: device {row.device_id!r} appears twice")
        seen.add(row.device_id)
        rows.append(row)
        if len(rows) > MAX_ROWS:
            raise ConfigError(f"{path}: expected at most {MAX_ROWS} devices per run, got more")
    if not rows:
        raise ConfigError(f"{path}: no devices")
    return rows


def batch_token_ok(token: str) -> bool:
    from otaml.core.types import DEVICE_TOKEN

    return DEVICE_TOKEN.ok(token)


def numbered(prefix: str, count: int, start: int = 1) -> list[Row]:
    if not 1 <= count <= MAX_ROWS:
        raise ConfigError(f"--count: expected 1 to {MAX_ROWS}, got {count}")
    width = max(4, len(str(start + count - 1)))
    return [_check_row(Row(f"{prefix}{i:0{width}d}"), "--prefix") for i in range(start, start + count)]


@dataclass(frozen=True)
class Defaults:
    server_url: str
    channel: str = ""
    wifi_ssid: str = ""
    wifi_password: str = ""
    tags: tuple[str, ...] = ()


def nvs_values(row: Row, d: Defaults, *, token: str = "", claim: str = "") -> dict[str, str]:
    """The otaml namespace of one device; empty values are left out (the firmware's Kconfig fallbacks)."""
    values = {
        "device_id": row.device_id, "token": token, "claim": claim,
        "server_url": row.server_url or d.server_url, "channel": row.channel or d.channel,
        "wifi_ssid": row.wifi_ssid or d.wifi_ssid, "wifi_pass": row.wifi_password or d.wifi_password,
    }
    return {k: v for k, v in values.items() if v}


def write_secret(path: Path, data: bytes) -> None:
    """Write a file only its owner can read (0600 from creation: never readable in between)."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        os.fchmod(f.fileno(), 0o600)
        f.write(data)
    os.replace(tmp, path)


def out_dir(path: Path) -> Path:
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, 0o700)
    return path


def flash_command(chip: str, port: str, offset: int, image: Path) -> list[str]:
    """The esptool command that writes an NVS image (the partition only; the app is flashed once for
    the whole fleet)."""
    return ["esptool", "--chip", chip, "--port", port, "write-flash", hex(offset), str(image)]


def write_index(path: Path, entries: Iterable[tuple[str, Path, list[str]]]) -> None:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["device_id", "image", "flash_command"])
        for device_id, image, command in entries:
            w.writerow([device_id, image.name, shlex.join(command)])


def write_images(rows: list[Row], tokens: dict[str, str], d: Defaults, folder: Path, partition: nvs.Partition,
                 chip: str, port: str, claim: str = "", progress: Callable[[int], None] | None = None) -> list[Path]:
    images = []
    entries = []
    for row in rows:
        data = nvs.image(nvs_values(row, d, token=tokens.get(row.device_id, ""), claim=claim), partition.size)
        path = folder / f"{row.device_id}.bin"
        write_secret(path, data)
        images.append(path)
        entries.append((row.device_id, path, flash_command(chip, port, partition.offset, path.resolve())))
        if progress:
            progress(1)
    write_index(folder / "index.csv", entries)
    return images
