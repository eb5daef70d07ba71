"""The MicroPython client as an ESP32 build takes it, checked without an ESP32 (none is reachable
here): every module compiles for the ESP32's Xtensa (mpy-cross -march=xtensawin), pyright finds no
error against the ESP32 port's stubs, the vocabulary equals the server's, and the board definition has
two app slots, rollback, the project version in the image and the package frozen in."""

from __future__ import annotations

import re
import subprocess
import sys
import sysconfig
from pathlib import Path

from otaml.fleet import protocol as server_protocol
from otaml.fleet.protocol import EventKind, OtaState, Reason, ResetReason
from tests.utils.mpy import MPY
from tests.utils.processes import ROOT

BIN = Path(sys.executable).parent
BOARD = MPY / "board" / "OTAML_ESP32"
PACKAGE = sorted((MPY / "otaml").glob("*.py"))


def test_every_module_compiles_for_the_esp32(tmp_path):
    subprocess.run([sys.executable, str(MPY / "tools" / "gen_model_module.py"), "--out", str(tmp_path / "otaml_model.py")],
                   check=True, capture_output=True)
    sources = [*PACKAGE, MPY / "host" / "otaml_host.py", tmp_path / "otaml_model.py"]
    assert len(PACKAGE) >= 15
    sizes = {}
    for src in sources:
        out = tmp_path / (src.stem + ".mpy")
        r = subprocess.run([str(BIN / "mpy-cross"), "-march=xtensawin", "-O3", "-o", str(out), str(src)],
                           capture_output=True, text=True)
        assert r.returncode == 0, f"{src.name}: {r.stderr}"
        assert out.read_bytes()[:1] == b"M"  # an .mpy file
        sizes[src.stem] = out.stat().st_size
    frozen = sum(sizes[p.stem] for p in PACKAGE)
    print(f"frozen size (mpy-cross -march=xtensawin -O3): otaml package {frozen} bytes in {len(PACKAGE)} modules, "
          f"model module {sizes['otaml_model']} bytes")


def test_pyright_is_clean_against_the_esp32_stubs():
    site = sysconfig.get_paths()["purelib"]
    assert (Path(site) / "esp32.pyi").is_file(), "micropython-esp32-esp32-generic-stubs is not installed"
    r = subprocess.run([str(BIN / "pyright"), "--pythonpath", sys.executable, "--typeshedpath", site, "--outputjson"],
                       cwd=MPY, capture_output=True, text=True, timeout=600)
    import json

    report = json.loads(r.stdout)
    errors = [d for d in report["generalDiagnostics"] if d["severity"] == "error"]
    assert report["summary"]["filesAnalyzed"] >= len(PACKAGE)
    assert errors == [], [(Path(d["file"]).name, d["range"]["start"]["line"] + 1, d["message"]) for d in errors]
    # The stubs are really in use: the device adapter's esp32 calls resolve to them.
    assert "device.py" in {Path(f).name for f in (MPY / "otaml").iterdir()}


def test_vocabulary_equals_the_servers():
    import importlib.util

    spec = importlib.util.spec_from_file_location("mpy_protocol", MPY / "otaml" / "protocol.py")
    assert spec is not None and spec.loader is not None
    mp = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mp)  # a plain module: no imports, the same file the device runs
    headers = {k: v for k, v in vars(server_protocol).items() if k.startswith("H_")}
    assert {k: getattr(mp, k) for k in headers} == headers
    assert list(mp.REASONS) == [r.value for r in Reason]
    assert list(mp.EVENTS) == [k.value for k in EventKind]
    assert [*mp.IMG_STATES, mp.IMG_UNDEFINED] == [s.value for s in OtaState]
    assert list(mp.RESET_REASONS) == [r.value for r in ResetReason]


def csv_rows(path: Path) -> list[list[str]]:
    rows = []
    for line in path.read_text().splitlines():
        cols = [c.strip() for c in line.split("#")[0].split(",")]
        if len(cols) >= 5 and cols[0]:
            rows.append(cols[:5])
    return rows


def test_board_definition_has_two_slots_rollback_a_version_and_the_package():
    rows = csv_rows(BOARD / "partitions-otaml.csv")
    apps = [r for r in rows if r[1] == "app"]
    assert [r[2] for r in apps] == ["ota_0", "ota_1"] and not any(r[2] == "factory" for r in rows)
    assert apps == [r for r in csv_rows(ROOT / "firmware" / "partitions.csv") if r[1] == "app"]  # otaml-sim's slots
    end = max(int(r[3], 0) + int(r[4], 0) for r in rows)
    assert end <= 4 * 1024 * 1024
    sdk = (BOARD / "sdkconfig.board").read_text()
    assert "CONFIG_BOOTLOADER_APP_ROLLBACK_ENABLE=y" in sdk
    assert "# CONFIG_APP_EXCLUDE_PROJECT_VER_VAR is not set" in sdk
    assert "# CONFIG_APP_EXCLUDE_PROJECT_NAME_VAR is not set" in sdk
    assert "CONFIG_APP_PROJECT_VER_FROM_CONFIG=y" in sdk and "CONFIG_PARTITION_TABLE_CUSTOM=y" in sdk
    cmake = (BOARD / "mpconfigboard.cmake").read_text()
    assert "version.txt" in cmake and "partitions-otaml.csv" in cmake and "manifest.py" in cmake
    assert re.fullmatch(r"\d+(\.\d+){1,2}", (MPY / "version.txt").read_text().strip())
    manifest = (BOARD / "manifest.py").read_text()
    assert 'package("otaml"' in manifest and 'module("otaml_model.py"' in manifest
