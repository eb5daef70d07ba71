"""The on-device model around the kernels (the C core's otaml_ml.c): the model card, input
normalization and quantization in float32 exactly as the C firmware computes them, the golden health
check the rollback gate runs, and the per-class counters each check-in reports.

Floats: the card's and the sensors' decimal numbers are converted to the nearest float32 with exact
integer arithmetic (MicroPython's own parser is not correctly rounded for float32), and every
operation is rounded to float32 (a no-op on an ESP32, whose MicroPython float is 32-bit; on the host,
whose float is a double, it reproduces float32 arithmetic exactly).
"""

import hashlib
import struct

from otaml import int8, jsonr, protocol as P
from otaml.jsonr import Dec

MAX_FEATURES = 8
MAX_LABELS = 8
MAX_GOLDEN = 4


class CardError(ValueError):
    pass


def f32(x):
    return struct.unpack("<f", struct.pack("<f", x))[0]


def decimal_to_f32(value):
    """The float32 nearest an exact decimal (int or Dec), rounding half to even."""
    if type(value) is int:
        value = Dec(value, 0)
    if not isinstance(value, Dec):
        raise CardError("expected a number")
    m, e = value.m, value.e
    if m == 0:
        return 0.0
    sign = 0
    if m < 0:
        sign, m = 1, -m
    num, den = (m * 10 ** e, 1) if e >= 0 else (m, 10 ** -e)
    sig, k = int8._round_bits(num, den, 24)
    biased = 150 - k
    if not 0 < biased < 255:
        raise CardError("number out of the float32 range the card may use")
    bits = (sign << 31) | (biased << 23) | (sig & 0x7FFFFF)
    return struct.unpack("<f", struct.pack("<I", bits))[0]


def parse_decimal_text(text):
    """A decimal as CSV holds it ("-36.20394515991211", "1e-05"): its nearest float32."""
    t = text.strip()
    neg = t.startswith("-")
    if neg or t.startswith("+"):
        t = t[1:]
    mant, _, exp = t.replace("E", "e").partition("e")
    whole, _, frac = mant.partition(".")
    digits = whole + frac
    if not digits or not digits.isdigit() or (exp and not exp.lstrip("+-").isdigit()):
        raise CardError("not a number: %r" % text)
    m = int(digits)
    return decimal_to_f32(Dec(-m if neg else m, (int(exp) if exp else 0) - len(frac)))


def _floats(arr, n):
    if not isinstance(arr, list) or len(arr) != n:
        raise CardError("expected %d numbers" % n)
    return [decimal_to_f32(v) for v in arr]


def _int8s(arr, n):
    if not isinstance(arr, list) or len(arr) != n or any(type(v) is not int or not -128 <= v <= 127 for v in arr):
        raise CardError("expected %d int8 values" % n)
    return list(arr)


class Card:
    """firmware/model/<name>.card.json, as otaml_model_card_parse reads it."""

    def __init__(self, raw):
        try:
            c = jsonr.loads(raw, lenient=True)
        except ValueError as e:
            raise CardError("not JSON: %s" % e)
        name, ver = c.get("name"), c.get("model_version")
        if type(name) is not str or type(ver) is not str:
            raise CardError("name/model_version")
        self.name, self.model_version = name, ver
        labels, features = c.get("labels"), c.get("features")
        if not isinstance(labels, list) or not isinstance(features, list):
            raise CardError("labels/features")
        if not 1 <= len(labels) <= MAX_LABELS or not 1 <= len(features) <= MAX_FEATURES:
            raise CardError("labels/features count")
        if any(type(lb) is not str for lb in labels):
            raise CardError("labels")
        self.labels = labels
        self.n_features = len(features)
        norm = c.get("normalization") or {}
        self.mean = _floats(norm.get("mean"), self.n_features)
        self.std = _floats(norm.get("std"), self.n_features)
        if any(not s > 0 for s in self.std):
            raise CardError("normalization std must be positive")
        inp = c.get("input") or {}
        if jsonr.decimal_of(inp.get("scale")) is None or type(inp.get("zero_point")) is not int:
            raise CardError("input quantization")
        self.in_scale = decimal_to_f32(inp["scale"])
        if not self.in_scale > 0:
            raise CardError("input quantization")
        self.in_zero_point = inp["zero_point"]
        nbytes = c.get("tflite_bytes")
        if type(nbytes) is not int or not 1 <= nbytes <= 4294967295:
            raise CardError("tflite_bytes")
        self.tflite_bytes = nbytes
        digest = c.get("sha256")
        if type(digest) is not str or len(digest) != 64 or any(ch not in "0123456789abcdef" for ch in digest):
            raise CardError("sha256")
        self.sha256 = bytes.fromhex(digest)
        self.golden = []
        for g in (c.get("golden") or [])[:MAX_GOLDEN]:
            if not isinstance(g, dict):
                raise CardError("golden")
            self.golden.append((_floats(g.get("input"), self.n_features), _int8s(g.get("input_int8"), self.n_features),
                                _int8s(g.get("output_int8"), len(labels))))
        if not self.golden:
            raise CardError("no golden inputs")

    def quantize(self, x):
        """q = floor(v / scale + 0.5) + zero_point, clamped, with v = (x - mean) / std, all in float32."""
        q = []
        for i in range(self.n_features):
            v = f32(f32(f32(x[i]) - self.mean[i]) / self.std[i])
            r = int(f32(f32(v / self.in_scale) + 0.5) // 1) + self.in_zero_point
            q.append(-128 if r < -128 else (127 if r > 127 else r))
        return q


class ML:
    def __init__(self, port, card_raw, model_raw):
        self.port = port
        self.loaded = False
        self.model: int8.Model | None = None
        self.card = Card(card_raw)
        self.model_id = "%s/%s" % (self.card.name, self.card.model_version)
        self.counts = [0] * len(self.card.labels)
        self.inferences = 0
        self.last_latency_us = 0
        self.alert_threshold = -1  # percent; -1: alerts off
        self.alerts = 0
        self.model_len = len(model_raw)
        self.model_sha256 = hashlib.sha256(model_raw).digest()
        why = self.integrity()
        if why:
            port.log("E", "otaml_ml", "%s: not loaded" % why)
            return
        try:
            self.model = int8.Model(model_raw)
        except ValueError as e:
            port.log("E", "otaml_ml", "model %s does not load: %s" % (self.model_id, e))
            return
        if self.model.n_in != self.card.n_features or self.model.n_out != len(self.card.labels):
            port.log("E", "otaml_ml", "model %s has %d inputs and %d outputs, the card says %d and %d"
                     % (self.model_id, self.model.n_in, self.model.n_out, self.card.n_features, len(self.card.labels)))
            return
        self.loaded = True
        port.log("I", "otaml_ml", "model %s loaded (%d-byte model, int8 kernels in Python)" % (self.model_id, len(model_raw)))

    def integrity(self):
        """"ml: model amp_health/1 ..." naming the first difference between the bytes and the card; "" if none."""
        c = self.card
        if self.model_len != c.tflite_bytes:
            return "ml: model %s is %d bytes, its card says %d" % (self.model_id, self.model_len, c.tflite_bytes)
        if self.model_sha256 != c.sha256:
            return "ml: model %s sha256 %s... differs from its card's %s..." % (
                self.model_id, self.model_sha256[:8].hex(), c.sha256[:8].hex())
        return ""

    def health_check(self):
        """The rollback gate's ML check: (ok, detail). The model's length and SHA-256 against its card
        first, then every golden input."""
        why = self.integrity()
        if why:
            return False, why
        if not self.loaded or self.model is None:
            return False, "ml: model %s did not load" % self.model_id
        for g, (x, q_card, out_card) in enumerate(self.card.golden):
            q = self.card.quantize(x)
            if q != q_card:
                return False, "ml: golden %d normalizes to other int8 values than the card's (normalization)" % g
            if self.model.invoke(q) != out_card:
                return False, "ml: golden %d output differs from the card (model)" % g
        return True, "ml: model %s (%d bytes, sha256 %s...) matches its card; %d golden inputs pass" % (
            self.model_id, self.model_len, self.model_sha256[:8].hex(), len(self.card.golden))

    def step(self, sample):
        """One inference on raw sensor values; counts the class (and an alert). Returns the class or -1."""
        if not self.loaded or self.model is None:
            return -1
        q = self.card.quantize(sample)
        t0 = self.port.uptime_us()
        out = self.model.invoke(q)
        self.last_latency_us = self.port.uptime_us() - t0
        best = 0
        for i in range(1, len(out)):
            if out[i] > out[best]:
                best = i
        self.counts[best] += 1
        self.inferences += 1
        t = self.alert_threshold
        if best != 0 and t >= 0 and (out[best] + 128) * 100 >= t * 256:
            self.alerts += 1
        return best

    def checkin_headers(self):
        if not self.loaded:
            return []
        counters = ",".join("%s=%d" % (lb, n) for lb, n in zip(self.card.labels, self.counts))
        if self.alert_threshold >= 0:
            counters += ",alerts=%d" % self.alerts
        return [(P.H_MODEL, self.model_id), (P.H_ML_COUNTERS, counters), (P.H_ML_LATENCY_US, str(self.last_latency_us))]


class Replay:
    """The sensor port of both firmwares: recorded samples (firmware/model/samples.csv), in a loop."""

    def __init__(self, csv_text, n_features):
        self.rows = []
        for line in csv_text.split("\n")[1:]:
            cols = line.split(",")
            if len(cols) < n_features:
                continue
            try:
                self.rows.append([parse_decimal_text(c) for c in cols[:n_features]])
            except CardError:
                continue
        self.i = 0

    def __call__(self):
        if not self.rows:
            return None
        row = self.rows[self.i % len(self.rows)]
        self.i += 1
        return row
