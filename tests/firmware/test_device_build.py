"""The ESP-IDF side is complete and clean, checked without an ESP32 toolchain (none is reachable here):
every source registered in its component, no host-only code in the device build, every Kconfig
symbol defined with help, partitions and sdkconfig defaults as the design needs."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from otaml.manifest import signing

ROOT = Path(__file__).resolve().parents[2]
FW = ROOT / "firmware"


def component_sources() -> list[str]:
    text = (FW / "main" / "CMakeLists.txt").read_text()
    srcs = re.search(r"SRCS(.*?)INCLUDE_DIRS", text, re.S).group(1)
    return re.findall(r'"([^"]+)"', srcs)


def test_platformio_config_parses_with_both_boards():
    pio = Path(sys.executable).with_name("pio")
    out = subprocess.run([str(pio), "project", "config", "--json-output"], cwd=ROOT, capture_output=True,
                         text=True, timeout=120, check=True).stdout
    sections = {name: dict(items) for name, items in json.loads(out)}
    assert Path(sections["platformio"]["src_dir"]) == FW / "main"
    for env in ("env:nodemcu-32s", "env:esp32-c3-devkitm-1"):
        assert env in sections
    assert sections["env"]["framework"] == ["espidf"]
    assert (ROOT / sections["env"]["board_build.partitions"]).is_file()
    embedded = sections["env"]["board_build.embed_txtfiles"]
    for f in embedded.split() if isinstance(embedded, str) else embedded:
        assert (ROOT / f).is_file(), f


def test_every_device_source_is_registered_and_no_host_code_is():
    listed = {(FW / "main" / s).resolve() for s in component_sources()}
    for path in listed:
        assert path.is_file(), f"{path} is listed in main/CMakeLists.txt but missing"
    expected = {*FW.joinpath("main").glob("*.c"), *FW.joinpath("core", "src").glob("*.c"),
                *FW.joinpath("port", "esp_idf").glob("*.c"), *FW.joinpath("port", "esp_idf").glob("*.cc")}
    assert {p.resolve() for p in expected} == listed
    for host_only in ("port/posix", "sim/", "tests/"):
        assert not any(host_only in s for s in component_sources())


def test_portable_core_includes_no_platform_header():
    for path in (FW / "core").rglob("*.[ch]"):
        for line in path.read_text().splitlines():
            assert not re.match(r'\s*#\s*include\s*[<"](esp_|freertos/|sdkconfig)', line), f"{path.name}: {line}"


def test_every_kconfig_symbol_used_is_defined_with_help():
    kconfig = (FW / "main" / "Kconfig.projbuild").read_text()
    defined = set(re.findall(r"^\s*config (OTAML_\w+)", kconfig, re.M))
    used = set()
    for path in [*FW.joinpath("main").glob("*.[ch]"), *FW.joinpath("port", "esp_idf").glob("*.[ch]")]:
        used |= set(re.findall(r"CONFIG_(OTAML_\w+)", path.read_text()))
    assert used <= defined, used - defined
    blocks = re.split(r"^\s*config ", kconfig, flags=re.M)[1:]
    for block in blocks:
        assert re.search(r"^\s*help\s*$", block, re.M), f"{block.split()[0]} has no help"


def test_partitions_fit_4mb_with_two_equal_ota_slots():
    rows = []
    for line in (FW / "partitions.csv").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, kind, sub, offset, size = [c.strip() for c in line.split(",")[:5]]
            rows.append((name, kind, sub, int(offset, 0), int(size, 0)))
    names = [r[0] for r in rows]
    assert names == ["nvs", "otadata", "phy_init", "ota_0", "ota_1"]
    for a, b in zip(rows, rows[1:]):
        assert a[3] + a[4] <= b[3], f"{a[0]} overlaps {b[0]}"
    ota = [r for r in rows if r[1] == "app"]
    assert ota[0][4] == ota[1][4] and all(r[3] % 0x10000 == 0 for r in ota)
    assert rows[-1][3] + rows[-1][4] <= 4 * 1024 * 1024
    index = json.loads((ROOT / "manifests" / "vectors" / "index.json").read_text())
    assert index["context"]["slot_size"] == ota[1][4]  # the vectors judge the same slot size


def test_sdkconfig_defaults_enable_rollback_and_the_partition_table():
    defaults = dict(
        line.split("=", 1) for line in (FW / "sdkconfig.defaults").read_text().splitlines()
        if line and not line.startswith("#")
    )
    assert defaults["CONFIG_BOOTLOADER_APP_ROLLBACK_ENABLE"] == "y"
    assert defaults["CONFIG_PARTITION_TABLE_CUSTOM"] == "y"
    assert (ROOT / defaults["CONFIG_PARTITION_TABLE_CUSTOM_FILENAME"].strip('"')).is_file()
    root_cmake = (ROOT / "CMakeLists.txt").read_text()
    assert "firmware/sdkconfig.defaults" in root_cmake and "project(otaml)" in root_cmake
    assert re.fullmatch(r"\d+(\.\d+){0,2}", (FW / "version.txt").read_text().strip())


def test_embedded_manifest_key_is_a_p256_public_key():
    key = signing.load_public_key((FW / "main" / "keys" / "manifest_pub.pem").read_bytes())
    assert len(signing.key_id(key)) == 16
