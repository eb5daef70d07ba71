"""The model package: a .tflite and its model card, and the checks a package must pass before a
firmware build embeds it (manifests are not involved: the model ships inside the signed image).

The card's schema and the checks that need no interpreter are ``otaml.ml.card`` (numpy-free, so
`release publish` applies them to the model an image embeds); this module adds TFLM's."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from otaml.ml.card import (  # noqa: F401 - the package's public names
    FIRMWARE_ARENA_BYTES,
    FIRMWARE_OPS,
    MAX_GOLDEN,
    Golden,
    ModelCard,
    ModelPackageError,
    Quantization,
    card_path,
    card_problem,
    load_package,
    model_mismatch,
)


def quantize_input(card: ModelCard, x: np.ndarray) -> np.ndarray:
    """Normalize and quantize raw sensor values exactly as the firmware does (firmware/core otaml_ml.c):
    float32 throughout, q = floor(v / scale + 0.5) + zero_point, clamped to int8."""
    x = np.asarray(x, dtype=np.float32)
    mean = np.asarray(card.normalization["mean"], dtype=np.float32)
    std = np.asarray(card.normalization["std"], dtype=np.float32)
    v = (x - mean) / std
    q = np.floor(v / np.float32(card.input.scale) + np.float32(0.5)) + card.input.zero_point
    return np.clip(q, -128, 127).astype(np.int8)


def validate(model: bytes, card: ModelCard, *, arena_limit: int = FIRMWARE_ARENA_BYTES,
             firmware_ops: frozenset[str] = FIRMWARE_OPS) -> None:
    """Refuse a package the firmware cannot run or whose card is not the truth about its model.

    Raises ModelPackageError naming the first problem: size or digest mismatch, input or output shape,
    labels or features, an op the firmware's resolver lacks, an arena above what the firmware reserves,
    a golden input whose quantization or TFLM output differs from the card.
    """
    from otaml.ml import tflm

    if problem := model_mismatch(card, len(model), hashlib.sha256(model).hexdigest()):
        raise ModelPackageError(f"the .tflite {problem}")
    if problem := card_problem(card, arena_limit=arena_limit, firmware_ops=firmware_ops):
        raise ModelPackageError(problem)
    ops = tflm.model_ops(model)
    missing = sorted(set(ops) - firmware_ops)
    if missing:
        raise ModelPackageError(
            f"the model uses {', '.join(missing)}, which the firmware's op resolver does not register "
            f"(it has {', '.join(sorted(firmware_ops))})"
        )
    details = tflm.io_details(model, card.arena_bytes)
    for name, want, got in [("input", card.input, details["input"]), ("output", card.output, details["output"])]:
        if list(got["shape"]) != want.shape or got["dtype"] != "int8":
            raise ModelPackageError(f"the model's {name} is {got['dtype']} {list(got['shape'])}, the card says int8 {want.shape}")
        if not np.isclose(got["scale"], want.scale, rtol=0, atol=0) or got["zero_point"] != want.zero_point:
            raise ModelPackageError(
                f"the model's {name} quantization is scale {got['scale']}, zero point {got['zero_point']}; the card "
                f"says {want.scale}, {want.zero_point}"
            )
    for i, g in enumerate(card.golden):
        q = quantize_input(card, np.array([g.input], dtype=np.float32))[0]
        if q.tolist() != g.input_int8:
            raise ModelPackageError(f"golden input {i}: normalization gives {q.tolist()}, the card says {g.input_int8}")
        out = tflm.invoke(model, card.arena_bytes, q)
        if out.tolist() != g.output_int8:
            raise ModelPackageError(f"golden input {i}: TFLM gives {out.tolist()}, the card says {g.output_int8}")


def write_card(tflite: Path, card: ModelCard) -> None:
    card_path(tflite).write_text(json.dumps(card.model_dump(), indent=2) + "\n")
