"""The adversarial corpus (manifests/vectors/adversarial.jsonl) judged by the MicroPython client on the
real MicroPython: every manifest and config document gets the same verdict (decision and reason, or
config status and applied properties) as the C core and the Python reference gave it, and nothing is
accepted without the key."""

from __future__ import annotations

import base64
import json

from tests.utils.mpy import run_script
from tests.utils.processes import ROOT

CORPUS = ROOT / "manifests" / "vectors" / "adversarial.jsonl"

JUDGE = r"""
import asyncio, binascii, json
import otaml_hostjs as H
from otaml import config, policy, protocol as P, sig
def rd(p): return bytes(H.read_file(p))
lines = rd(H.argv[1]).split(b"\n")
head = json.loads(lines[0])
c = head["context"]
ctx = policy.Context(c["now"], c["running_version"], c["project"], c["chip"], c["channel"], c["secure_version"],
                     c["last_manifest_version"], c["failed_version"], c["slot_size"])
release = sig.Keyring([rd(H.root + "/manifests/" + head["key"])])
cfg_ring = sig.Keyring([rd(H.root + "/manifests/" + head["config_key"])])
for n, line in enumerate(lines[1:]):
    if not line:
        continue
    if n % 25 == 0:
        await asyncio.sleep_ms(0)  # the WebAssembly port collects garbage only when control returns to JS
    e = json.loads(line)
    s = binascii.a2b_base64(e["sig"].encode())
    if e["kind"] == "manifest":
        d, r, m = policy.evaluate(release, binascii.a2b_base64(e["body"].encode()), s, ctx)
        verdict = d if d != P.REJECT else r
    else:
        st, cfg = config.verify(cfg_ring, binascii.a2b_base64(e["doc"].encode()), s, head["device_id"],
                                head["applied_revision"])
        verdict = st + "\t" + (cfg.applied() if cfg else "")
    print("= %s\t%s" % (e["id"], verdict))
"""


def test_micropython_gives_every_corpus_entry_the_c_core_verdict(tmp_path):
    lines = CORPUS.read_text().splitlines()
    header, entries = json.loads(lines[0]), [json.loads(x) for x in lines[1:]]
    assert len(entries) >= 1000

    def raw(text: str) -> str:  # header values as bytes (they may hold NUL or lone surrogates)
        return base64.b64encode(text.encode("utf-8", "surrogatepass")).decode()

    feed = [json.dumps(header)]
    for e in entries:
        item = {"id": e["id"], "kind": e["kind"], "sig": raw(e["sig"])}
        if e["kind"] == "manifest":
            item["body"] = e["body"]
        else:
            item["doc"] = raw(e["doc"])
        feed.append(json.dumps(item))
    path = tmp_path / "corpus.jsonl"
    path.write_text("\n".join(feed) + "\n")

    out = run_script(JUDGE, str(path), timeout=900)
    got = dict(line[2:].split("\t", 1) for line in out.splitlines() if line.startswith("= "))
    assert len(got) == len(entries)
    expected = {e["id"]: e["expect"] if e["kind"] == "manifest" else f"{e['expect']}\t{e['applied']}" for e in entries}
    differ = [(e["id"], e["family"], expected[e["id"]], got[e["id"]]) for e in entries if got[e["id"]] != expected[e["id"]]]
    assert not differ, f"{len(differ)} entries judged differently (id, family, expected, MicroPython): {differ[:12]}"
    assert sum(v in ("update", "no_update") for v in got.values()) >= 50  # acceptances are judged too
