"""The MicroPython client's int8 kernels against the real TFLM (the tflite-micro wheel): the card's
golden inputs, every recorded sample (normalized and quantized on the device, compared with the float32
pipeline of otaml.ml.package and then inferred) and random int8 inputs, all bit for bit."""

from __future__ import annotations

import json

import numpy as np

from otaml.ml import package, tflm
from tests.utils.mpy import run_script
from tests.utils.processes import ROOT

MODEL = ROOT / "firmware" / "model" / "amp_health.tflite"
CARD = ROOT / "firmware" / "model" / "amp_health.card.json"
SAMPLES = ROOT / "firmware" / "model" / "samples.csv"

INFER = r"""
import json, time
import otaml_hostjs as H
from otaml import int8, ml
def rd(p): return bytes(H.read_file(p))
model = int8.Model(rd(H.argv[1]))
card = ml.Card(rd(H.argv[2]))
replay = ml.Replay(rd(H.argv[3]).decode(), card.n_features)
randoms = json.loads(rd(H.argv[4]))
out = {"golden_q": [card.quantize(x) for x, _, _ in card.golden]}
out["golden_out"] = [model.invoke(q) for q in out["golden_q"]]
out["sample_q"] = [card.quantize(row) for row in replay.rows]
out["sample_out"] = [model.invoke(q) for q in out["sample_q"]]
t0 = time.ticks_us()
out["random_out"] = [model.invoke(q) for q in randoms]
out["us_per_inference"] = time.ticks_diff(time.ticks_us(), t0) // len(randoms)
print("RESULT " + json.dumps(out))
"""


def result(stdout: str) -> dict:
    return json.loads(next(x for x in stdout.splitlines() if x.startswith("RESULT "))[7:])


def test_int8_kernels_equal_tflm_on_golden_samples_and_random_inputs(tmp_path):
    model = MODEL.read_bytes()
    card = package.ModelCard.model_validate_json(CARD.read_text())
    rng = np.random.default_rng(20261128)
    randoms = rng.integers(-128, 128, size=(400, card.input.shape[-1]), dtype=np.int8)
    (tmp_path / "randoms.json").write_text(json.dumps(randoms.tolist()))
    out = result(run_script(INFER, str(MODEL), str(CARD), str(SAMPLES), str(tmp_path / "randoms.json")))

    assert out["golden_q"] == [g.input_int8 for g in card.golden]
    assert out["golden_out"] == [g.output_int8 for g in card.golden]

    raw = np.loadtxt(SAMPLES, delimiter=",", skiprows=1, usecols=range(card.input.shape[-1]), dtype=np.float32)
    assert len(out["sample_q"]) == len(raw) == 256
    expected_q = package.quantize_input(card, raw)
    assert out["sample_q"] == expected_q.tolist()
    assert out["sample_out"] == tflm.invoke_many(model, 8192, expected_q).tolist()

    assert out["random_out"] == tflm.invoke_many(model, 8192, randoms).tolist()
    # The outputs span the classes, so agreement is not agreement on one constant answer.
    assert len({int(np.argmax(o)) for o in out["sample_out"]}) >= 3
    print(f"int8 inference in the WebAssembly MicroPython: {out['us_per_inference']} us")
