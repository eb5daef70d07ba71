"""The shared signed vectors: up to date with their generator, and judged right by the Python side.

The C suite (firmware/tests) judges the same files through the whole device policy; here the Python
implementation covers its layers: size, signature, format. Policy-layer vectors must pass all three.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest

from otaml.core.errors import ManifestError, SignatureError
from otaml.fleet.protocol import Reason
from otaml.manifest import signing
from otaml.manifest.format import MAX_MANIFEST_BYTES, parse_manifest, read_manifest

ROOT = Path(__file__).resolve().parents[2]
VECTORS = ROOT / "manifests" / "vectors"
INDEX = json.loads((VECTORS / "index.json").read_text())
KEY = signing.load_public_key((ROOT / "manifests" / INDEX["key"]).read_bytes())
SCHEMA = json.loads((ROOT / "manifests" / "firmware.schema.json").read_text())


def load(name: str) -> tuple[bytes, str]:
    return (VECTORS / f"{name}.json").read_bytes(), (VECTORS / f"{name}.json.sig").read_text().strip()


def test_committed_vectors_match_their_generator(tmp_path):
    subprocess.run([sys.executable, str(ROOT / "scripts" / "gen-vectors"), "--out", str(tmp_path)], check=True,
                   capture_output=True)
    for fresh in tmp_path.iterdir():
        assert fresh.read_bytes() == (VECTORS / fresh.name).read_bytes(), f"{fresh.name} is stale: run scripts/gen-vectors"
    # adversarial.jsonl and keysets.jsonl have their own generators (tests/firmware/test_corpus.py, test_keysets.py)
    assert {p.name for p in tmp_path.iterdir()} == {p.name for p in VECTORS.iterdir()} - {"adversarial.jsonl", "keysets.jsonl"}


def test_every_refusal_reason_of_a_manifest_has_a_vector():
    manifest_reasons = {Reason.BAD_SIGNATURE, Reason.MANIFEST_TOO_LARGE, Reason.MANIFEST_MALFORMED,
                        Reason.MANIFEST_EXPIRED, Reason.MANIFEST_REPLAYED, Reason.KEY_MISMATCH,
                        Reason.PROJECT_MISMATCH, Reason.CHIP_MISMATCH, Reason.CHANNEL_MISMATCH,
                        Reason.SECURE_VERSION_LOWER, Reason.VERSION_FAILED_BEFORE, Reason.IMAGE_TOO_LARGE}
    assert manifest_reasons <= {v["expect"] for v in INDEX["vectors"]}
    assert {"update", "no_update"} <= {v["expect"] for v in INDEX["vectors"]}


@pytest.mark.parametrize("vector", INDEX["vectors"], ids=lambda v: v["name"])
def test_python_judges_each_vector_by_its_layer(vector):
    body, sig = load(vector["name"])
    layer = vector["layer"]
    if layer == "size":
        assert len(body) > MAX_MANIFEST_BYTES
        with pytest.raises(ManifestError, match="at most 4096 bytes"):
            read_manifest(body, sig, KEY)
    elif layer == "signature":
        with pytest.raises(SignatureError):
            signing.verify(KEY, body, sig)
    elif layer == "format":
        signing.verify(KEY, body, sig)  # authentic, yet refused
        with pytest.raises(ManifestError):
            read_manifest(body, sig, KEY)
    else:
        assert layer == "policy"
        doc = read_manifest(body, sig, KEY)
        jsonschema.validate(json.loads(body), SCHEMA)
        assert doc.key_id == INDEX["key_id"]


def _is_json(name: str) -> bool:
    try:
        json.loads(load(name)[0])
        return True
    except ValueError:
        return False


# Rules a JSON Schema cannot state: the strict JSON rules (a schema sees parsed values), `version`
# against `semver` (two fields), and integer literals (the schema's "integer" admits 1.0).
SCHEMA_BLIND = {"J1", "J2", "J3", "J4", "J5", "J6", "version", "integer"}


@pytest.mark.parametrize("vector", [v for v in INDEX["vectors"] if v["layer"] == "format"
                                    and v["expect"] == "manifest_malformed" and _is_json(v["name"])
                                    and v.get("rule") not in SCHEMA_BLIND],
                         ids=lambda v: v["name"])
def test_schema_agrees_on_malformed_vectors(vector):
    body, _ = load(vector["name"])
    obj = json.loads(body)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(obj, SCHEMA, format_checker=jsonschema.FormatChecker())
    with pytest.raises(ManifestError):
        parse_manifest(body)
