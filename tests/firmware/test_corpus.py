"""The adversarial corpus (manifests/vectors/adversarial.jsonl): the C core and the Python reference of the
device verdict (otaml.manifest.device) judge every entry alike, and nothing is accepted without the key.

build/host/judge_corpus runs each entry through otaml_policy_evaluate / otaml_config_verify; here the
same entries go through the Python reference, live, and the two must agree line by line.
"""

from __future__ import annotations

import base64
import collections
import functools
import json
import subprocess
import sys

import pytest
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from otaml.core.errors import SignatureError
from otaml.manifest import device, signing
from tests.utils.processes import ROOT
from tests.utils.sim import BUILD

CORPUS = ROOT / "manifests" / "vectors" / "adversarial.jsonl"
P256_N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
ACCEPTED = {"update", "no_update"}


def _load() -> tuple[dict, list[dict]]:
    lines = CORPUS.read_text().splitlines()
    return json.loads(lines[0]), [json.loads(line) for line in lines[1:]]


HEADER, ENTRIES = _load()
RELEASE = signing.load_private_key(ROOT / "manifests" / "keys" / "test-release.pem")
CONFIG = signing.load_private_key(ROOT / "manifests" / "keys" / "test-config.pem")


@functools.cache
def c_verdicts() -> dict[str, str]:
    r = subprocess.run([str(BUILD / "judge_corpus"), str(CORPUS)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 or "differ from the corpus" in r.stderr, r.stderr[-2000:]
    assert "ERROR: " not in r.stderr, r.stderr[-4000:]  # sanitizer reports
    return dict(line[2:].split("\t", 1) for line in r.stdout.splitlines() if line.startswith("= "))


@functools.cache
def python_verdicts() -> dict[str, str]:
    return {e["id"]: python_verdict(e) for e in ENTRIES}


def python_verdict(e: dict) -> str:
    if e["kind"] == "manifest":
        decision, reason = device.judge(base64.b64decode(e["body"]), e["sig"], [RELEASE.public_key],
                                        device.DeviceContext.from_dict(HEADER["context"]))
        return decision if decision != device.REJECT else reason
    status, applied = device.judge_config(e["doc"], e["sig"], [CONFIG.public_key], HEADER["device_id"],
                                          HEADER["applied_revision"])
    return f"{status}\t{','.join(f'{k}={v}' for k, v in applied.items())}"


def made_with_key(key: signing.SigningKey, data: bytes, sig: str) -> bool:
    """Whether ``sig`` is the key's own signature over exactly ``data`` (RFC 6979 makes it reproducible),
    or that signature with s negated (ECDSA's one malleation: same key, same bytes)."""
    try:
        r, s = decode_dss_signature(signing.decode_signature(sig))
    except (SignatureError, ValueError):
        return False
    r0, s0 = decode_dss_signature(base64.b64decode(key.sign(data)))
    return r == r0 and s in (s0, P256_N - s0)


def test_committed_corpus_matches_its_generator(tmp_path):
    out = tmp_path / "adversarial.jsonl"
    subprocess.run([sys.executable, str(ROOT / "scripts" / "gen-adversarial"), "--out", str(out)], check=True,
                   capture_output=True, timeout=300)
    assert out.read_bytes() == CORPUS.read_bytes(), "adversarial.jsonl is stale: run scripts/gen-adversarial"


def test_corpus_is_large_and_mostly_reaches_the_parsers():
    manifests = [e for e in ENTRIES if e["kind"] == "manifest"]
    assert len(manifests) >= 1000 and HEADER["manifests"] == len(manifests)
    assert len({(e["body"], e["sig"]) for e in manifests}) == len(manifests)
    resigned = [e for e in manifests if e["sig"] == RELEASE.sign(base64.b64decode(e["body"]))]
    assert len(resigned) >= 0.6 * len(manifests)  # an unsigned mutation only reaches the signature check
    verdicts = collections.Counter(e["expect"] for e in manifests)
    assert verdicts["manifest_malformed"] >= 500 and verdicts["bad_signature"] >= 100
    assert {"update", "no_update", "key_mismatch", "project_mismatch", "chip_mismatch", "channel_mismatch",
            "manifest_expired", "manifest_replayed", "version_failed_before", "secure_version_lower",
            "image_too_large", "manifest_too_large"} <= set(verdicts)
    configs = collections.Counter(e["expect"] for e in ENTRIES if e["kind"] == "config")
    assert set(configs) == {"ok", "parse", "signature", "too_large", "wrong_device", "stale"}


def test_python_reference_gives_the_committed_verdicts():
    verdicts = python_verdicts()
    differ = [e["id"] for e in ENTRIES
              if verdicts[e["id"]] != (e["expect"] if e["kind"] == "manifest" else f"{e['expect']}\t{e['applied']}")]
    assert not differ, f"{len(differ)} entries changed verdict (regenerate on purpose?): {differ[:10]}"


def test_c_core_and_python_reference_agree_on_every_entry():
    c, py = c_verdicts(), python_verdicts()
    assert len(c) == len(ENTRIES) == len(py)
    differ = [(e["id"], e["family"], c[e["id"]], py[e["id"]]) for e in ENTRIES if c[e["id"]] != py[e["id"]]]
    assert not differ, f"{len(differ)} entries judged differently (id, family, C, Python): {differ[:10]}"


@pytest.mark.parametrize("side", ["c", "python"])
def test_nothing_is_accepted_without_the_key(side):
    verdicts = c_verdicts() if side == "c" else python_verdicts()
    accepted = forged = 0
    for e in ENTRIES:
        if e["kind"] == "manifest" and verdicts[e["id"]] in ACCEPTED:
            accepted += 1
            forged += not made_with_key(RELEASE, base64.b64decode(e["body"]), e["sig"])
        elif e["kind"] == "config" and verdicts[e["id"]].startswith("ok\t"):
            accepted += 1
            forged += not made_with_key(CONFIG, signing.decode_base64_strict(e["doc"]), e["sig"])
    assert accepted >= 100  # the check below has something to check
    assert forged == 0
