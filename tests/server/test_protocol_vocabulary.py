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

    from otaml.manifest import rules

    source = (ROOT / "firmware" / "core" / "src" / "otaml_config.c").read_text()
    header = (ROOT / "firmware" / "core" / "include" / "otaml_config.h").read_text()
    c_ints = {name: (int(lo), int(hi)) for name, lo, hi in re.findall(r'\{"(\w+)", PRV_INT, (-?\d+), (-?\d+), -?\d+, 0, NULL', source)}
    c_strings = dict(re.findall(r'\{"(\w+)", PRV_STR, 0, 0, 0, (\w+),', source))
    assert c_ints == {p.name: (p.low, p.high) for p in PROPERTIES.values() if p.rule is None}
    assert set(c_strings) == {p.name for p in PROPERTIES.values() if p.rule is not None} == {"mqtt_url", "mqtt_prefix"}
    limits = {name: int(v) for name, v in re.findall(r"#define (OTAML_CONFIG_MAX_MQTT_\w+) (\d+)", header)}
    assert limits[c_strings["mqtt_url"]] == rules.MAX_MQTT_URL_BYTES
    assert limits[c_strings["mqtt_prefix"]] == rules.MAX_MQTT_PREFIX_BYTES
    # the table is sorted by name: otaml_config_format writes the applied form in that order
    names = re.findall(r'\{"(\w+)", PRV_(?:INT|STR),', source)
    assert names == sorted(names) == sorted(PROPERTIES)
