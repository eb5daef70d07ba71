"""Train, quantize and package the amplifier-health model (needs the `train` extra: TensorFlow).

    scripts/train-model [--out firmware/model] [--seed 7] [--epochs 60]

Keras trains a Dense 64-32-16-4 softmax network on standardized features (the firmware standardizes
with the card's mean/std before quantizing, so normalization is not inside the graph). The converter
quantizes weights and activations to int8 with a representative dataset; input and output are int8.
Accuracy is measured on a held-out set, the int8 figure with the real TFLM interpreter.
"""

from __future__ import annotations

import argparse
import hashlib
import math
import os
import sys
from pathlib import Path

import numpy as np

from otaml.ml import dataset, tflm
from otaml.ml.package import Golden, ModelCard, ModelPackageError, Quantization, quantize_input, validate, write_card

MODEL_NAME = "amp_health"


def _split(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    order = rng.permutation(n)
    a, b = int(n * 0.7), int(n * 0.85)
    return order[:a], order[a:b], order[b:]


def train(out: Path, *, seed: int = 7, samples: int = 12000, epochs: int = 25, model_version: str = "1",
          gain: dict[str, float] | None = None) -> ModelCard:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    tf.keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()

    x, y = dataset.generate(samples, seed, gain)
    train_idx, val_idx, hold_idx = _split(samples, np.random.default_rng(seed + 1))
    mean = x[train_idx].mean(axis=0).astype(np.float32)
    std = x[train_idx].std(axis=0).astype(np.float32)
    norm = lambda a: ((a - mean) / std).astype(np.float32)  # noqa: E731

    model = tf.keras.Sequential([
        tf.keras.Input(shape=(len(dataset.FEATURES),), dtype=tf.float32),
        tf.keras.layers.Dense(64, activation="relu"),
        tf.keras.layers.Dense(32, activation="relu"),
        tf.keras.layers.Dense(16, activation="relu"),
        tf.keras.layers.Dense(len(dataset.LABELS), activation="softmax"),
    ])
    model.compile(optimizer=tf.keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    history = model.fit(norm(x[train_idx]), y[train_idx], validation_data=(norm(x[val_idx]), y[val_idx]),
                        epochs=epochs, batch_size=64, verbose=0)
    float_pred = model.predict(norm(x[hold_idx]), verbose=0).argmax(axis=1)
    float_acc = float((float_pred == y[hold_idx]).mean())

    rep = norm(x[train_idx][:500])
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([row[None, :]] for row in rep)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    tflite = converter.convert()

    arena_host = tflm.required_arena(tflite, len(dataset.FEATURES))
    arena = int(math.ceil(arena_host * 1.25 / 256) * 256)  # margin for the target's allocator
    io = tflm.io_details(tflite, arena)
    card = ModelCard(
        name=MODEL_NAME, model_version=model_version, labels=list(dataset.LABELS), features=list(dataset.FEATURES),
        normalization={"mean": [float(v) for v in mean], "std": [float(v) for v in std]},
        input=Quantization(**{k: io["input"][k] for k in ("shape", "dtype", "scale", "zero_point")}),
        output=Quantization(**{k: io["output"][k] for k in ("shape", "dtype", "scale", "zero_point")}),
        ops=tflm.model_ops(tflite), arena_bytes=arena, tflite_bytes=len(tflite),
        sha256=hashlib.sha256(tflite).hexdigest(), accuracy={}, holdout_size=len(hold_idx),
        golden=[Golden(input=[0.0] * 5, input_int8=[0] * 5, output_int8=[0] * 4, label="healthy")],
        training={"seed": seed, "samples": samples, "epochs": epochs, "arena_measured_host": arena_host,
                  "tensorflow": tf.__version__,
                  **({"bench_gain": ", ".join(f"{k} x{v:g}" for k, v in gain.items())} if gain else {})},
    )
    q_hold = quantize_input(card, x[hold_idx])
    int8_out = tflm.invoke_many(tflite, arena, q_hold)
    int8_acc = float((int8_out.argmax(axis=1) == y[hold_idx]).mean())
    card.accuracy = {"float": round(float_acc, 4), "int8": round(int8_acc, 4)}
    if abs(float_acc - int8_acc) > 0.01:
        raise ModelPackageError(f"int8 accuracy {int8_acc:.4f} is more than one point from float {float_acc:.4f}")

    golden = []
    for k, label in enumerate(dataset.LABELS):  # one correctly classified held-out sample per class
        i = next(i for i in range(len(hold_idx)) if y[hold_idx][i] == k and int8_out[i].argmax() == k)
        golden.append(Golden(input=[float(v) for v in x[hold_idx][i]], input_int8=q_hold[i].tolist(),
                             output_int8=int8_out[i].tolist(), label=label))
    card.golden = golden

    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{MODEL_NAME}.tflite"
    validate(tflite, card)  # never write a package the firmware would refuse
    path.write_bytes(tflite)
    write_card(path, card)
    _write_samples(out / "samples.csv", x[hold_idx][:256], y[hold_idx][:256])
    _plot(history.history, out / "training_history.png")
    return card


def _write_samples(path: Path, x: np.ndarray, y: np.ndarray) -> None:
    """Recorded sensor samples the firmware replays (no ADC or Modbus in this project)."""
    lines = [",".join(dataset.FEATURES) + ",label"]
    lines += [",".join(repr(float(v)) for v in row) + f",{dataset.LABELS[k]}" for row, k in zip(x, y)]
    path.write_text("\n".join(lines) + "\n")


def _plot(history: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    ax1.plot(history["loss"], label="train")
    ax1.plot(history["val_loss"], label="validation")
    ax1.set_title("loss")
    ax1.set_xlabel("epoch")
    ax1.legend()
    ax2.plot(history["accuracy"], label="train")
    ax2.plot(history["val_accuracy"], label="validation")
    ax2.set_title("accuracy")
    ax2.set_xlabel("epoch")
    ax2.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Train, quantize and package the amplifier-health model")
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[3] / "firmware" / "model")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--samples", type=int, default=12000)
    ap.add_argument("--epochs", type=int, default=25)
    ap.add_argument("--model-version", default="1")
    ap.add_argument("--bench-gain", action="append", default=[], metavar="FEATURE=FACTOR",
                    help="Train on data from a bench whose instrument reads FEATURE times FACTOR (e.g. plate_voltage=1.2): "
                         "a model that passes its own golden inputs and sees the field differently (the ML gate's case)")
    args = ap.parse_args(argv)
    gain = {}
    for item in args.bench_gain:
        name, _, factor = item.partition("=")
        if name not in dataset.FEATURES:
            print(f"A fatal error occurred: --bench-gain: expected one of {', '.join(dataset.FEATURES)}, got {name!r}", file=sys.stderr)
            return 2
        try:
            gain[name] = float(factor)
        except ValueError:
            gain[name] = float("nan")
        if not 0.1 <= gain[name] <= 10:
            print(f"A fatal error occurred: --bench-gain {name}: expected a factor from 0.1 to 10, got {factor!r}", file=sys.stderr)
            return 2
    try:
        import tensorflow  # noqa: F401
    except ImportError:
        print("training needs TensorFlow: pip install -e '.[train]'", file=sys.stderr)
        return 2
    try:
        card = train(args.out, seed=args.seed, samples=args.samples, epochs=args.epochs, model_version=args.model_version,
                     gain=gain or None)
    except ModelPackageError as e:
        print(f"A fatal error occurred: {e}", file=sys.stderr)
        return 2
    print(f"{card.name} v{card.model_version}: {card.tflite_bytes} bytes, arena {card.arena_bytes} bytes, "
          f"accuracy float {card.accuracy['float']:.4f} / int8 {card.accuracy['int8']:.4f} "
          f"on {card.holdout_size} held-out samples -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
