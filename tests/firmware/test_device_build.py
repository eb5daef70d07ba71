"""The ESP-IDF side is complete and clean, checked without an ESP32 toolchain (none is reachable here):
every source registered in its component, no host-only code in the device build, every Kconfig
symbol defined with help, partitions and sdkconfig defaults as the design needs."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from functools import cache
from pathlib import Path

import yaml

from otaml.manifest import signing

ROOT = Path(__file__).resolve().parents[2]
FW = ROOT / "firmware"


def component_sources() -> list[str]:
    text = (FW / "main" / "CMakeLists.txt").read_text()
    srcs = re.search(r"SRCS(.*?)INCLUDE_DIRS", text, re.S).group(1)
    return re.findall(r'"([^"]+)"', srcs)


@cache
def platformio_sections() -> dict[str, dict]:
    """platformio.ini as PlatformIO itself reads it (offline, ~0.5 s)."""
    pio = Path(sys.executable).with_name("pio")
    out = subprocess.run([str(pio), "project", "config", "--json-output"], cwd=ROOT, capture_output=True,
                         text=True, timeout=120, check=True).stdout
    return {name: dict(items) for name, items in json.loads(out)}


def test_platformio_config_parses_with_both_boards():
    sections = platformio_sections()
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


def cmake_embeds(kind: str) -> set[Path]:
    """main/CMakeLists.txt's EMBED_FILES or EMBED_TXTFILES entries, resolved (they are relative to main/)."""
    text = (FW / "main" / "CMakeLists.txt").read_text()
    m = re.search(rf"\b{kind}\b(.*?)(?=\b(?:EMBED_FILES|EMBED_TXTFILES|SRCS|INCLUDE_DIRS|PRIV_INCLUDE_DIRS|REQUIRES|PRIV_REQUIRES)\b|\))",
                  text, re.S)
    return {(FW / "main" / f).resolve() for f in re.findall(r'"([^"]+)"', m.group(1))} if m else set()


def platformio_embeds(option: str) -> set[Path]:
    """platformio.ini's board_build.embed_* entries, resolved (they are relative to the project)."""
    value = platformio_sections()["env"].get(option, "")
    return {(ROOT / f).resolve() for f in (value.split() if isinstance(value, str) else value)}


def test_every_embedded_file_is_in_platformio_and_the_reverse():
    """PlatformIO generates the embedded objects from board_build.embed_* alone: a file main's CMakeLists
    embeds but platformio.ini does not list leaves `pio run` with an undefined _binary_..._start; the
    kind matters too (a text file gets its NUL only as a txtfile)."""
    for kind, option in (("EMBED_FILES", "board_build.embed_files"), ("EMBED_TXTFILES", "board_build.embed_txtfiles")):
        cmake, pio = cmake_embeds(kind), platformio_embeds(option)
        assert cmake, f"no {kind} in main/CMakeLists.txt"
        assert cmake - pio == set(), f"{kind} entries missing from platformio.ini {option}: {sorted(map(str, cmake - pio))}"
        assert pio - cmake == set(), f"platformio.ini {option} entries main/CMakeLists.txt does not {kind}: {sorted(map(str, pio - cmake))}"
        for path in cmake:
            assert path.is_file(), path
    symbols = set(re.findall(r"_binary_(\w+)_start", "".join(p.read_text() for p in FW.joinpath("main").glob("*.c"))))
    embedded = {re.sub(r"\W", "_", p.name) for p in cmake_embeds("EMBED_FILES") | cmake_embeds("EMBED_TXTFILES")}
    assert symbols <= embedded, f"linked but not embedded: {symbols - embedded}"


def _version(text: str) -> tuple[int, int, int, int]:
    """A component manager version, "1.2.0" or with a revision "1.2.0~1", as a comparable tuple."""
    m = re.fullmatch(r"(\d+)(?:\.(\d+))?(?:\.(\d+))?(?:~(\d+))?", text)
    assert m, f"expected a version like 4.2, 1.2.0 or 1.2.0~1, got {text!r}"
    return tuple(int(g or 0) for g in m.groups())  # type: ignore[return-value]


def _satisfies(version: str, spec: str) -> bool:
    """The subset of the component manager's version specs this project uses: comma-joined ==, >=, >, <=, <."""
    ops = {"==": lambda a, b: a == b, ">=": lambda a, b: a >= b, ">": lambda a, b: a > b,
           "<=": lambda a, b: a <= b, "<": lambda a, b: a < b}
    v = _version(version)
    for clause in spec.replace(" ", "").split(","):
        m = re.fullmatch(r"(==|>=|<=|>|<)(.+)", clause)
        assert m, f"version spec {spec!r}: teach this test the operator of {clause!r} before using it"
        if not ops[m.group(1)](v, _version(m.group(2))):
            return False
    return True


def test_dependencies_lock_pins_what_idf_component_yml_asks_for():
    """The component manager keeps dependencies.lock in the project directory (DEPENDENCIES_LOCK's
    default): the repository root, where CMakeLists.txt and platformio.ini are, not src_dir."""
    manifest = yaml.safe_load((FW / "main" / "idf_component.yml").read_text())["dependencies"]
    lock = yaml.safe_load((ROOT / "dependencies.lock").read_text())
    assert lock["version"] == "2.0.0" and re.fullmatch(r"[0-9a-f]{64}", lock["manifest_hash"])
    assert sorted(lock["direct_dependencies"]) == sorted(manifest)
    locked = lock["dependencies"]
    for name, want in manifest.items():
        spec = want if isinstance(want, str) else want["version"]
        assert name in locked, f"{name} is asked for but not locked"
        assert _satisfies(locked[name]["version"], spec), f"{name}: locked {locked[name]['version']}, manifest asks {spec}"
    assert locked["idf"] == {"source": {"type": "idf"}, "version": "5.5.3"}
    for name, entry in locked.items():
        if name == "idf":
            continue
        # Nothing floats: every locked component is pinned to one release by the manifest itself, so
        # a re-solve (a lock deleted or out of date) picks the same versions.
        spec = manifest.get(name)
        spec = spec if isinstance(spec, str) or spec is None else spec["version"]
        assert spec is not None, f"{name} is locked but not pinned in idf_component.yml: it would float on a re-solve"
        major, minor, patch, _ = _version(entry["version"])
        assert not _satisfies(f"{major}.{minor}.{patch + 1}", spec), f"{name}: {spec!r} admits the next release"
        assert entry["source"] == {"registry_url": "https://components.espressif.com/", "type": "service"}
        assert re.fullmatch(r"[0-9a-f]{64}", entry["component_hash"])
        for dep in entry.get("dependencies", []):  # what each locked component asks for is locked too
            assert dep["name"] in locked and _satisfies(locked[dep["name"]]["version"], dep["version"]), dep
