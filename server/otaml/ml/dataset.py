"""A seeded synthetic dataset for the vintage amplifier health example.

Five sensor readings of a valve amplifier, four classes. Each class draws from its own plausible
operating region and the regions overlap on purpose, so no model reaches 100 %.
"""

from __future__ import annotations

import numpy as np

FEATURES = ("plate_voltage", "bias_voltage", "heater_current", "output_thd", "impedance")
UNITS = ("V", "V", "A", "%", "ohm")
LABELS = ("healthy", "unstable", "overdriven", "failsoon")

# Per class: mean and spread of each feature. Rough valve-amp physics: a healthy EL34 stage near
# 430 V plate, -38 V bias, 1.5 A heater, <1 % THD into 8 ohm; instability drifts the bias and raises
# THD; overdrive pushes plate voltage and THD up; a failing valve sags plate voltage and heater current.
_CLASS_PARAMS = {
    "healthy": ((430.0, -38.0, 1.50, 0.6, 8.0), (14.0, 2.0, 0.06, 0.35, 0.8)),
    "unstable": ((415.0, -31.0, 1.47, 2.6, 7.0), (22.0, 4.0, 0.09, 1.1, 1.6)),
    "overdriven": ((458.0, -41.0, 1.54, 5.5, 8.3), (18.0, 3.0, 0.08, 1.8, 1.0)),
    "failsoon": ((388.0, -35.0, 1.33, 2.0, 9.4), (24.0, 3.5, 0.10, 1.2, 1.8)),
}


def generate(n: int, seed: int, gain: dict[str, float] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """n samples (float32, shape [n, 5]) and their class indices, reproducible from seed.

    ``gain`` scales features as a miscalibrated instrument reads them (a plate-voltage divider built
    with the wrong resistor, reading 20 % high: {"plate_voltage": 1.2}). A model trained on such data
    is consistent with itself (its card's golden inputs, taken from the same bench, reproduce) and
    wrong about correctly calibrated devices in the field."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, len(LABELS), size=n)
    x = np.empty((n, len(FEATURES)), dtype=np.float32)
    for k, label in enumerate(LABELS):
        mean, spread = _CLASS_PARAMS[label]
        idx = np.flatnonzero(y == k)
        x[idx] = rng.normal(mean, spread, size=(idx.size, len(FEATURES))).astype(np.float32)
    x[:, 3] = np.abs(x[:, 3])  # THD cannot be negative
    for name, factor in (gain or {}).items():
        x[:, FEATURES.index(name)] *= np.float32(factor)
    return x, y.astype(np.int32)
