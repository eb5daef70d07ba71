"""The training pipeline itself, end to end (slow: TensorFlow trains a model from scratch)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from otaml.ml.package import load_package, validate
from tests.utils.processes import ROOT

pytestmark = pytest.mark.slow


def test_pipeline_trains_quantizes_and_packages(tmp_path):
    try:
        import tensorflow  # noqa: F401
    except ImportError:
        pytest.fail("training needs the train extra: run the README's test command (scripts/test installs it)")
    r = subprocess.run([sys.executable, "-m", "otaml.ml.train", "--out", str(tmp_path), "--samples", "6000",
                        "--epochs", "12", "--model-version", "9"], capture_output=True, text=True, timeout=600,
                       cwd=ROOT)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "amp_health v9:" in r.stdout
    model, card = load_package(tmp_path / "amp_health.tflite")
    validate(model, card)
    assert abs(card.accuracy["float"] - card.accuracy["int8"]) <= 0.01
    assert 0.8 < card.accuracy["int8"] < 0.99
    assert (tmp_path / "training_history.png").stat().st_size > 10_000
    assert (tmp_path / "samples.csv").read_text().splitlines()[0] == \
        "plate_voltage,bias_voltage,heater_current,output_thd,impedance,label"
    assert json.loads((tmp_path / "amp_health.card.json").read_text())["training"]["samples"] == 6000
