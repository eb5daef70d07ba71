"""The simulator's store is ESP-IDF's NVS: it boots from partitions made by ESP-IDF's own generator
(esp-idf-nvs-partition-gen, what `release provision` runs), and what it writes is read back by an
independent strict reader (tests/utils/nvs.py) and by ESP-IDF's nvs_tool when an ESP-IDF tree is on the
machine, after reboots and after thousands of writes that cycle every page through garbage collection."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
from esp_idf_nvs_partition_gen import nvs_partition_gen as gen

from otaml.image.synthetic import build_app_image
from tests.utils import nvs
from tests.utils.sim import SIM, SimDevice, partition

NVS_OFFSET, NVS_SIZE = partition("nvs")
IDF_NVS_TOOL = Path(os.environ.get("IDF_PATH", "/tmp/idf-trees/esp-idf")) / "components/nvs_flash/nvs_partition_tool/nvs_tool.py"


def generated(entries: list[tuple[str, str, str, str]]) -> bytes:
    """An image from the official generator: (key, type, encoding, value) rows as its CSV has them."""
    out = io.BytesIO()
    n = gen.nvs_open(out, NVS_SIZE - 4096, gen.Page.VERSION2)
    for key, typ, enc, value in entries:
        gen.write_entry(n, key, typ, enc, value)
    gen.nvs_close(n)
    return out.getvalue()


def boot(tmp_path: Path, image: bytes, name: str = "dev") -> SimDevice:
    (tmp_path / "app.bin").write_bytes(build_app_image("1.0"))
    (tmp_path / f"{name}.nvs").write_bytes(image)
    dev = SimDevice(tmp_path / f"{name}.flash", "", "", "")
    r = subprocess.run([str(SIM), "--flash", str(dev.flash), "flash", str(tmp_path / "app.bin"), "--nvs",
                        str(tmp_path / f"{name}.nvs")], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return dev


def test_the_simulator_reads_every_type_the_official_generator_writes(tmp_path):
    long_text = "".join(chr(0x41 + i % 26) for i in range(3000))  # 95 entries: a string spanning most of a page
    image = generated([
        ("other", "namespace", "", ""), ("device_id", "data", "string", "not-ours"),
        ("otaml", "namespace", "", ""),
        ("device_id", "data", "string", "dev-0042"), ("mf_ver", "data", "u64", "4294967296007"),
        ("cfg_rev", "data", "u32", "4000000000"), ("small", "data", "u8", "7"), ("neg", "data", "i32", "-5"),
        ("blob", "data", "hex2bin", "00ff" * 700),  # a multi-page blob the store ignores
        ("long", "data", "string", long_text), ("token", "data", "string", "abcdefghijklmnopqrstuvwxyz012345"),
    ])
    assert nvs.read(image)["otaml"]["long"] == long_text  # the reader agrees with the generator
    info = boot(tmp_path, image).info()["nvs"]
    assert info["device_id"] == "dev-0042"  # namespace otaml's, not namespace other's
    assert info["mf_ver"] == 4294967296007 and info["cfg_rev"] == 4000000000 and info["small"] == 7
    assert info["long"] == long_text
    assert info["token"].startswith("sha256:") and "abcdefgh" not in str(info)  # secrets shown by fingerprint only


def test_what_the_simulator_writes_survives_reboots_and_reads_as_esp_idf_nvs(tmp_path):
    image = generated([("otaml", "namespace", "", ""), ("device_id", "data", "string", "dev-1")])
    dev = boot(tmp_path, image)
    run = subprocess.run([str(SIM), "--flash", str(dev.flash), "run", "--server", "http://127.0.0.1:9", "--token",
                          "tok-abcdefghijklmnopqrst", "--polls", "1", "--interval-ms", "10"],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stdout + run.stderr
    part = dev.read_partition("nvs")
    values = nvs.read(part)["otaml"]
    assert values["device_id"] == "dev-1" and values["token"] == "tok-abcdefghijklmnopqrst"
    info = dev.info()["nvs"]  # a fresh process: the reboot
    assert info["device_id"] == "dev-1" and info["token"].startswith("sha256:")
    idf_tool_reads(tmp_path, part, {"otaml:token = tok-abcdefghijklmnopqrst", "otaml:device_id = dev-1"})


def idf_tool_reads(tmp_path: Path, part: bytes, lines: set[str]) -> None:
    """ESP-IDF's own parser (components/nvs_flash/nvs_partition_tool), when a tree is on this machine:
    its integrity check passes and it reads the values."""
    if not IDF_NVS_TOOL.exists():
        return
    (tmp_path / "nvs.bin").write_bytes(part)
    out = subprocess.run([sys.executable, str(IDF_NVS_TOOL), "--integrity-check", "--dump", "minimal", str(tmp_path / "nvs.bin")],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    got = {line.replace("\x00", "").strip() for line in out.stdout.splitlines()}
    assert lines <= got, out.stdout[:3000]
    assert not any(w in out.stdout.lower() for w in ("mismatch", "corrupt", "invalid", "error")), out.stdout[:3000]


def test_after_thousands_of_writes_and_power_cuts_the_partition_is_still_esp_idf_nvs(tmp_path):
    """The C store's own test (firmware/tests/test_sim_nvs.c: 3,000 rewrites through garbage collection, a
    power cut at every flash operation of a write) leaves its flash file here for two other readers."""
    flash = tmp_path / "cycled.flash"
    r = subprocess.run([str(SIM.parent / "test_sim_nvs"), str(flash)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and " 0 failed" in r.stdout, r.stdout[-2000:] + r.stderr[-2000:]
    with open(flash, "rb") as f:
        f.seek(NVS_OFFSET)
        part = f.read(NVS_SIZE)
    values = nvs.read(part)["otaml"]
    assert values["token"] == "after-the-cuts-0123456789" and values["mf_ver"] == 42
    assert values["dl_off"] == 2999 and values["keyset"] == "k" * 1499 and "ob_det" not in values
    idf_tool_reads(tmp_path, part, {"otaml:token = after-the-cuts-0123456789", "otaml:dl_off = 2999"})


def test_a_partition_that_is_not_nvs_or_too_big_is_refused_at_flash_time(tmp_path):
    (tmp_path / "app.bin").write_bytes(build_app_image("1.0"))
    for name, data in [("big", b"\xff" * (NVS_SIZE + 4096)), ("odd", b"\xff" * 100), ("empty", b"")]:
        (tmp_path / name).write_bytes(data)
        r = subprocess.run([str(SIM), "--flash", str(tmp_path / f"{name}.flash"), "flash", str(tmp_path / "app.bin"),
                            "--nvs", str(tmp_path / name)], capture_output=True, text=True, timeout=60)
        assert r.returncode != 0 and "multiple of 4096" in r.stderr, r.stderr


@pytest.mark.parametrize("damage", ["header_crc", "entry_crc", "garbage_page"])
def test_damaged_pages_and_entries_are_dropped_not_trusted(tmp_path, damage):
    image = bytearray(generated([("otaml", "namespace", "", ""), ("device_id", "data", "string", "dev-9"),
                                 ("token", "data", "string", "abcdefghijklmnopqrstuvwxyz012345")]))
    if damage == "header_crc":
        image[10] ^= 0xFF  # a reserved header byte: the page's CRC no longer matches
    elif damage == "entry_crc":
        image[64 + 32 * 1 + 9] ^= 0x01  # the key of the device_id entry (entry 0 is the namespace)
    else:
        image[4096:8192] = bytes(range(256)) * 16
    info = boot(tmp_path, bytes(image)).info()["nvs"]
    if damage == "header_crc":
        assert info == {}
    elif damage == "entry_crc":
        assert "device_id" not in info and info["token"].startswith("sha256:")
    else:
        assert info["device_id"] == "dev-9"
