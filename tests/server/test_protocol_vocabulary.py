"""One vocabulary for devices: the Python enums, the JSON schema and the C header must agree."""

import json
import re
from pathlib import Path

from otaml.fleet.protocol import EventKind, OtaState, Reason, ResetReason

ROOT = Path(__file__).resolve().parents[2]
EVENT_SCHEMA = json.loads((ROOT / "manifests" / "event.schema.json").read_text())


def test_event_schema_matches_python():
    assert EVENT_SCHEMA["properties"]["kind"]["enum"] == [k.value for k in EventKind]
    assert EVENT_SCHEMA["properties"]["reason"]["enum"] == [r.value for r in Reason]


def test_readme_documents_every_reason_and_state():
    readme = (ROOT / "manifests" / "README.md").read_text()
    for word in [*Reason, *EventKind, *OtaState, *ResetReason]:
        assert f"`{word.value}`" in readme, f"manifests/README.md does not mention `{word.value}`"


def test_c_header_matches_python():
    header = ROOT / "firmware" / "core" / "include" / "otaml_protocol.h"
    text = header.read_text()
    c_reasons = re.findall(r'X\(OTAML_REASON_\w+,\s*"(\w+)"\)', text)
    c_kinds = re.findall(r'X\(OTAML_EVENT_\w+,\s*"(\w+)"\)', text)
    assert c_reasons == [r.value for r in Reason]
    assert c_kinds == [k.value for k in EventKind]
    # esp_reset_reason_t's order: the ESP-IDF port maps the enum by value.
    assert re.findall(r'X\(OTAML_RESET_\w+,\s*"(\w+)"\)', text) == [r.value for r in ResetReason]


def test_c_header_names_every_protocol_header():
    from otaml.fleet import protocol

    text = (ROOT / "firmware" / "core" / "include" / "otaml_protocol.h").read_text()
    c_headers = dict(re.findall(r'#define OTAML_(H_\w+) "([^"]+)"', text))
    py_headers = {name: value for name, value in vars(protocol).items() if name.startswith("H_")}
    assert c_headers == py_headers


def test_config_properties_agree_between_server_and_firmware():
    from otaml.fleet.config import PROPERTIES

    source = (ROOT / "firmware" / "core" / "src" / "otaml_config.c").read_text()
    c_table = {name: (int(lo), int(hi)) for name, lo, hi in re.findall(r'\{"(\w+)", (-?\d+), (-?\d+), -?\d+, offsetof', source)}
    assert c_table == {p.name: (p.low, p.high) for p in PROPERTIES.values()}
