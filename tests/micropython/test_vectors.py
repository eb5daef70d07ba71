"""The shared signed vectors judged by the MicroPython client on the real MicroPython interpreter: every
manifest vector with the decision and reason the C core gives (firmware/tests/test_vectors.c judges
the same index), and every desired-config document with the C core's status."""

from __future__ import annotations

import json

from tests.utils.mpy import run_script
from tests.utils.processes import ROOT

VECTORS = ROOT / "manifests" / "vectors"
INDEX = json.loads((VECTORS / "index.json").read_text())

JUDGE = r"""
import json
import otaml_hostjs as H
from otaml import sig, policy, protocol as P
def rd(p): return bytes(H.read_file(H.root + "/" + p))
index = json.loads(rd("manifests/vectors/index.json"))
c = index["context"]
ring = sig.Keyring([rd("manifests/" + index["key"])])
def ctx(now):
    return policy.Context(now, c["running_version"], c["project"], c["chip"], c["channel"], c["secure_version"],
                          c["last_manifest_version"], c["failed_version"], c["slot_size"])
out = {"key_id": ring.keys[0].key_id, "verdicts": {}}
for v in index["vectors"]:
    body = rd("manifests/vectors/%s.json" % v["name"])
    s = rd("manifests/vectors/%s.json.sig" % v["name"]).decode().rstrip("\r\n")
    d, r, m = policy.evaluate(ring, body, s, ctx(c["now"]))
    out["verdicts"][v["name"]] = d if d != P.REJECT else r
body = rd("manifests/vectors/expired.json")
s = rd("manifests/vectors/expired.json.sig").decode().rstrip("\r\n")
out["expired_without_time"] = policy.evaluate(ring, body, s, ctx(0))[0]
d, r, m = policy.evaluate(ring, rd("manifests/vectors/valid_update.json"),
                          rd("manifests/vectors/valid_update.json.sig").decode().strip(), ctx(c["now"]))
out["parsed"] = [m.semver, m.size, m.manifest_version, m.sha256[0], m.file]
print("RESULT " + json.dumps(out))
"""

CONFIG = r"""
import json
import otaml_hostjs as H
from otaml import sig, config
def rd(p): return bytes(H.read_file(H.root + "/" + p))
v = json.loads(rd("manifests/vectors/config-documents.json"))
ring = sig.Keyring([rd("manifests/" + v["key"])])
out = {}
for c in v["cases"]:
    st, cfg = config.verify(ring, c["doc"], c["sig"], v["device_id"], v["applied_revision"])
    out[c["name"]] = [st, cfg.applied() if cfg else ""]
print("RESULT " + json.dumps(out))
"""


def result(stdout: str) -> dict:
    line = next(x for x in stdout.splitlines() if x.startswith("RESULT "))
    return json.loads(line[len("RESULT "):])


def test_every_manifest_vector_is_judged_as_the_c_core_judges_it():
    out = result(run_script(JUDGE))
    assert out["key_id"] == INDEX["key_id"]
    expected = {v["name"]: v["expect"] for v in INDEX["vectors"]}
    assert len(expected) >= 25
    assert out["verdicts"] == expected
    # Without trusted time the expired vector is judged by the other rules (it is a valid update).
    assert out["expired_without_time"] == "update"
    valid = json.loads((VECTORS / "valid_update.json").read_text())
    assert out["parsed"] == [valid["semver"], valid["size"], valid["manifest_version"], int(valid["sha256"][:2], 16),
                             valid["file"]]


def test_every_config_document_is_judged_as_the_c_core_judges_it():
    doc = json.loads((VECTORS / "config-documents.json").read_text())
    out = result(run_script(CONFIG))
    assert out == {c["name"]: [c["expect"], c["applied"]] for c in doc["cases"]}
