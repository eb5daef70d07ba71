"""The committed model package, checked with the real TFLM interpreter and with LiteRT, and every way a
package is refused."""

from __future__ import annotations

import copy
import re
import subprocess

import numpy as np
import pytest

from otaml.ml import dataset, tflm
from otaml.ml.package import FIRMWARE_ARENA_BYTES, FIRMWARE_OPS, ModelPackageError, load_package, quantize_input, validate
from tests.utils.processes import RELEASE, ROOT

MODEL = ROOT / "firmware" / "model" / "amp_health.tflite"


@pytest.fixture(scope="module")
def package():
    return load_package(MODEL)


@pytest.fixture(scope="module")
def holdout(package):
    """Fresh samples from the same sensor model, drawn with a seed training never used: independent of
    the training code's own split, so a leak between training and evaluation cannot flatter the model."""
    _, card = package
    seed = int(card.training["seed"]) + 1000
    assert seed not in (int(card.training["seed"]), int(card.training["seed"]) + 1)
    return dataset.generate(3000, seed)


def test_committed_package_validates(package):
    model, card = package
    validate(model, card)
    assert card.tflite_bytes < 16 * 1024 and card.arena_bytes <= FIRMWARE_ARENA_BYTES
    assert card.input.shape == [1, 5] and card.output.shape == [1, 4]
    assert set(card.ops) <= FIRMWARE_OPS


def test_golden_outputs_reproduce_bit_exactly_under_tflm(package):
    model, card = package
    for g in card.golden:
        q = quantize_input(card, np.array([g.input], dtype=np.float32))[0]
        assert q.tolist() == g.input_int8
        assert tflm.invoke(model, card.arena_bytes, q).tolist() == g.output_int8
    assert [g.label for g in card.golden] == list(dataset.LABELS)


def test_int8_accuracy_on_independent_samples_backs_the_cards_claim(package, holdout):
    model, card = package
    x, y = holdout
    out = tflm.invoke_many(model, card.arena_bytes, quantize_input(card, x))
    int8_acc = float((out.argmax(axis=1) == y).mean())
    # 3,000 samples: the standard error of an accuracy near 0.93 is under 0.5 points, so 2.5 points is
    # five of them; a card that overstates the model, or a model that only fits its own split, fails.
    assert abs(int8_acc - card.accuracy["int8"]) <= 0.025, (int8_acc, card.accuracy)
    assert abs(card.accuracy["float"] - card.accuracy["int8"]) <= 0.01
    assert 0.8 < int8_acc < 0.99, "classes must overlap: a trivially perfect model proves nothing"


def test_litert_without_xnnpack_agrees_with_tflm(package, holdout):
    """Same predictions everywhere; the raw int8 outputs are bit-identical on all but a handful of rows,
    which differ by a few LSB (TFLM's and TFLite's int8 kernels round differently in rare cases)."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    model, card = package
    q = quantize_input(card, holdout[0])
    it = Interpreter(model_content=model, experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    it.allocate_tensors()
    inp, outp = it.get_input_details()[0]["index"], it.get_output_details()[0]["index"]
    lite = []
    for row in q:
        it.set_tensor(inp, row.reshape(1, -1))
        it.invoke()
        lite.append(it.get_tensor(outp).reshape(-1).copy())
    lite = np.asarray(lite, dtype=np.int8)
    micro = tflm.invoke_many(model, card.arena_bytes, q)
    assert np.array_equal(lite.argmax(axis=1), micro.argmax(axis=1))
    diff = np.abs(lite.astype(int) - micro.astype(int)).max(axis=1)
    assert (diff == 0).mean() >= 0.99, f"{int((diff > 0).sum())} of {len(diff)} rows differ"
    assert diff.max() <= 8, f"largest difference {diff.max()} LSB"


def test_required_arena_is_the_smallest_that_works_and_the_card_covers_it(package):
    model, card = package
    measured = tflm.required_arena(model, 5)
    # Checked against TFLM itself, not against what training recorded with the same function: the
    # measured arena invokes, 16 bytes less (TFLM's alignment) does not allocate.
    assert tflm.invoke(model, measured, np.zeros(5, dtype=np.int8)).shape == (4,)
    with pytest.raises(RuntimeError, match="allocate"):
        tflm.invoke(model, measured - 16, np.zeros(5, dtype=np.int8))
    assert measured <= card.arena_bytes <= FIRMWARE_ARENA_BYTES


@pytest.mark.parametrize("mutate,message", [
    (lambda m, c: (m, c.model_copy(update={"input": c.input.model_copy(update={"shape": [1, 6]})})), "expected input shape"),
    (lambda m, c: (m, c.model_copy(update={"arena_bytes": FIRMWARE_ARENA_BYTES * 2})), "the firmware reserves"),
    (lambda m, c: (m, c.model_copy(update={"golden": [c.golden[0].model_copy(update={"output_int8": [0, 0, 0, 0]})]})),
     "TFLM gives"),
    (lambda m, c: (m, c.model_copy(update={"normalization": {"mean": [x + 9 for x in c.normalization["mean"]],
                                                             "std": c.normalization["std"]}})), "normalization gives"),
    (lambda m, c: (m[:-1] + bytes([m[-1] ^ 1]), c), "the card says"),
    (lambda m, c: (m, c.model_copy(update={"output": c.output.model_copy(update={"zero_point": 0})})), "quantization"),
])
def test_refusals(package, mutate, message):
    model, card = package
    bad_model, bad_card = mutate(model, copy.deepcopy(card))
    with pytest.raises(ModelPackageError, match=message):
        validate(bad_model, bad_card)


def test_an_op_the_firmware_lacks_is_refused(package):
    model, card = package
    with pytest.raises(ModelPackageError, match="SOFTMAX, which the firmware's op resolver does not register"):
        validate(model, card, firmware_ops=FIRMWARE_OPS - {"SOFTMAX"})


def test_python_op_list_and_arena_match_the_firmware():
    cc = (ROOT / "firmware" / "port" / "esp_idf" / "otaml_ml_tflm.cc").read_text()
    registered = {re.sub(r"(?<!^)(?=[A-Z])", "_", name).upper() for name in re.findall(r"->Add(\w+)\(\);", cc)}
    assert registered == FIRMWARE_OPS
    assert f"kOpCount = {len(FIRMWARE_OPS)};" in cc
    kconfig = (ROOT / "firmware" / "main" / "Kconfig.projbuild").read_text()
    arena = re.search(r"config OTAML_ML_ARENA_BYTES.*?default (\d+)", kconfig, re.S).group(1)
    assert int(arena) == FIRMWARE_ARENA_BYTES


def test_release_model_validate_cli(tmp_path, package):
    ok = subprocess.run([RELEASE, "model", "validate", str(MODEL)], capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr
    assert "golden inputs reproduce under TFLM" in ok.stdout
    model, _ = package
    bad = tmp_path / "amp_health.tflite"
    bad.write_bytes(model)
    (tmp_path / "amp_health.card.json").write_text(
        (MODEL.with_suffix(".card.json")).read_text().replace('"arena_bytes": 4608', '"arena_bytes": 999999'))
    r = subprocess.run([RELEASE, "model", "validate", str(bad)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "A fatal error occurred:" in r.stderr and "the firmware reserves" in r.stderr
    missing = subprocess.run([RELEASE, "model", "validate", str(tmp_path / "nope.tflite")], capture_output=True, text=True)
    assert missing.returncode == 2 and "cannot read model package" in missing.stderr
