"""The desired-configuration MQTT properties are judged alike by the C core (otaml_config.c, through the
corpus judge), the Python reference of the device (otaml.manifest.device) and the server, which never
signs what a device would refuse: generated hostile values, signed with the test config key, get one
verdict from both judges, and the server's API answers 422 naming the property (never 5xx)."""

from __future__ import annotations

import base64
import json
import subprocess

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from otaml.fleet import config
from otaml.manifest import device, signing
from tests.utils.devices import HttpDevice
from tests.utils.processes import ROOT
from tests.utils.sim import BUILD, build_host

KEY = signing.load_private_key(ROOT / "manifests" / "keys" / "test-config.pem")
HEADER = json.loads((ROOT / "manifests" / "vectors" / "adversarial.jsonl").read_text().split("\n", 1)[0])

# Values near the rules: their own alphabet, the characters they refuse, escapes, and their length edges.
PIECES = ["mqtt://", "mqtts://", "mqtt:/", "ws://", "h", "broker", ".", "-", "_", ":", "1883", "65535", "65536", "0",
          "[", "]", "::1", "@", "/", "#", "+", "$", " ", ",", "=", "?", "%20", "é", "\\u0000", "\\n", "\\/", "a" * 40]
BASES = ["mqtt://broker:1883", "mqtts://[::1]:8883", "mqtt://10.0.0.7", "plant/amp", "a.b/c_d-e", "otaml"]
# A valid value with one piece spliced in at any place: every refusal reason next to an acceptance.
spliced = st.builds(lambda base, piece, at: base[: at % (len(base) + 1)] + piece + base[at % (len(base) + 1):],
                    st.sampled_from(BASES), st.sampled_from(PIECES), st.integers(0, 40))
values = spliced | st.lists(st.sampled_from(PIECES), max_size=8).map("".join) | st.text(max_size=60)


def json_string(value: str) -> str:
    """A JSON string literal whose escapes (\\u0000, \\n, \\/) stay as written: hostile spellings included."""
    return '"' + value.replace('"', "'") + '"'


def c_judge(tmp_path, docs: list[bytes]) -> list[str]:
    corpus = tmp_path / "generated.jsonl"
    lines = [json.dumps(HEADER)]
    for i, body in enumerate(docs):
        lines.append(json.dumps({"id": f"g{i}", "kind": "config", "family": "generated", "doc": base64.b64encode(body).decode(),
                                 "sig": KEY.sign(body), "expect": "", "applied": ""}))
    corpus.write_text("\n".join(lines) + "\n")
    r = subprocess.run([str(BUILD / "judge_corpus"), str(corpus)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and "ERROR: " not in r.stderr, r.stderr[-3000:]
    return [line.split("\t", 1)[1] for line in r.stdout.splitlines() if line.startswith("= ")]


def python_judge(body: bytes) -> str:
    status, applied = device.judge_config(base64.b64encode(body).decode(), KEY.sign(body), [KEY.public_key],
                                          HEADER["device_id"], HEADER["applied_revision"])
    return f"{status}\t{','.join(f'{k}={v}' for k, v in applied.items())}"


@pytest.fixture(scope="module")
def judge_binary() -> None:
    build_host()


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(url=values, prefix=values, enabled=st.sampled_from(["0", "1", "2", "-1", "true", '"1"', "1.0", "null"]))
def test_c_and_python_give_every_generated_value_one_verdict(tmp_path, judge_binary, url, prefix, enabled):
    docs = [
        f'{{"device_id":"dev-1","revision":9,"properties":{{"mqtt_url":{json_string(url)}}}}}'.encode(),
        f'{{"device_id":"dev-1","revision":9,"properties":{{"mqtt_prefix":{json_string(prefix)}}}}}'.encode(),
        (f'{{"device_id":"dev-1","revision":9,"properties":{{"mqtt_enabled":{enabled},"mqtt_prefix":{json_string(prefix)},'
         f'"mqtt_url":{json_string(url)}}}}}').encode(),
    ]
    assert c_judge(tmp_path, docs) == [python_judge(d) for d in docs]


@settings(max_examples=200, deadline=None)
@given(url=values, prefix=values)
def test_the_server_signs_only_what_the_device_accepts(url, prefix):
    """validate() (the API and CLI) and the device's judge agree on each value alone."""
    for name, value in (("mqtt_url", url), ("mqtt_prefix", prefix)):
        try:
            accepted = config.validate({name: value}) == {name: value}
        except config.ConfigValueError as e:
            accepted = False
            assert name in str(e)
        body = json.dumps({"device_id": "dev-1", "revision": 9, "properties": {name: value}}).encode()
        if len(body) <= config.MAX_DOCUMENT_BYTES:
            assert (python_judge(body).split("\t")[0] == "ok") == accepted, (name, value)


@pytest.mark.e2e
def test_the_api_refuses_hostile_values_by_name(server):
    hostile = [{"mqtt_url": "mqtt://user:pw@broker"}, {"mqtt_url": "mqtt://h:65536"}, {"mqtt_url": "http://h"},
               {"mqtt_url": "mqtt://h\u0000"}, {"mqtt_url": "mqtt://" + "a" * 200}, {"mqtt_prefix": "plant/#"},
               {"mqtt_prefix": "$SYS/x"}, {"mqtt_prefix": "a//b"}, {"mqtt_prefix": ""}, {"mqtt_enabled": 2},
               {"mqtt_enabled": "1"}, {"mqtt_url": 1883}, {"mqtt_url": ["mqtt://h"]}, {"mqtt_prefix": None}]
    with server.admin() as admin:
        for props in hostile:
            r = admin.put("/api/config/channel/stable", json=props)
            assert r.status_code == 422, (props, r.status_code, r.text)
            assert next(iter(props)) in r.text
        r = admin.put("/api/config/channel/stable", json={"mqtt_enabled": 1, "mqtt_url": "mqtts://[::1]:8883",
                                                          "mqtt_prefix": "plant/amp"})
        assert r.status_code == 200, r.text
        assert admin.get("/api/config").json()["properties"]["mqtt_url"]["type"] == "string"
    # What a device reports back is held to the same rules: a hostile value is a 400 and stores nothing.
    dev = HttpDevice.enroll(server, "dev-report", config_revision=1)
    dev.applied = {"mqtt_enabled": 1, "mqtt_prefix": "plant/amp", "mqtt_url": "mqtts://[::1]:8883"}
    assert dev.poll().status_code in (200, 404)
    for bad in ("mqtt://u:p@h", "mqtt://h/x", "plant/#"):
        dev.applied = {"mqtt_url" if bad.startswith("mqtt") else "mqtt_prefix": bad}
        r = dev.poll()
        assert r.status_code == 400 and "X-Otaml-Config-Applied" in r.text, (bad, r.status_code, r.text)
    with server.admin() as admin:
        state = admin.get("/api/devices/dev-report/state").json()
    assert state["reported_config"] == {"mqtt_enabled": 1, "mqtt_prefix": "plant/amp", "mqtt_url": "mqtts://[::1]:8883"}
