"""Whether the device takes a manifest: manifests/README.md, "Device checks, in order", one line per
check, as firmware/core/src/otaml_policy.c applies them. The first failure decides; its reason is what
a `rejected` event reports.
"""

from otaml import jsonr, protocol as P, rules
from otaml import version as versions


class Context:
    """What the device knows when it judges (otaml_policy_ctx_t)."""

    def __init__(self, now, running_version, project, chip, channel, secure_version, last_manifest_version,
                 failed_version, slot_size):
        self.now = now  # trusted Unix time, 0 without it
        self.running_version = versions.parse(running_version) or (0, 0, 0)
        self.project = project
        self.chip = chip
        self.channel = channel
        self.secure_version = secure_version
        self.last_manifest_version = last_manifest_version
        self.failed_version = failed_version  # "" when nothing rolled back here
        self.slot_size = slot_size


def check(m, ctx):
    """Checks 5-11 on an authentic, well-formed manifest: (decision, reason)."""
    if m.project != ctx.project: return P.REJECT, P.PROJECT_MISMATCH
    if m.chip != ctx.chip: return P.REJECT, P.CHIP_MISMATCH
    if m.channel != ctx.channel: return P.REJECT, P.CHANNEL_MISMATCH
    # Without trusted time expiry cannot be judged; the replay rule below still bounds a freeze to the
    # last manifest this device installed from.
    if ctx.now > 0 and m.expires <= ctx.now: return P.REJECT, P.MANIFEST_EXPIRED
    if m.manifest_version < ctx.last_manifest_version: return P.REJECT, P.MANIFEST_REPLAYED
    if m.manifest_version == ctx.last_manifest_version: return P.NO_UPDATE, P.OK
    if versions.compare(m.version, ctx.running_version) <= 0: return P.NO_UPDATE, P.OK
    if ctx.failed_version and m.semver == ctx.failed_version: return P.REJECT, P.VERSION_FAILED_BEFORE
    if m.secure_version < ctx.secure_version: return P.REJECT, P.SECURE_VERSION_LOWER
    if m.size > ctx.slot_size: return P.REJECT, P.IMAGE_TOO_LARGE
    return P.UPDATE, P.OK


def evaluate(keyring, body, signature_b64, ctx):
    """Checks 1-11 on the raw bytes and the signature as served: (decision, reason, manifest or None)."""
    if len(body) > P.MAX_MANIFEST_BYTES: return P.REJECT, P.MANIFEST_TOO_LARGE, None
    key = keyring.verify(body, signature_b64, P.MAX_SIGNATURE_B64)
    if key is None: return P.REJECT, P.BAD_SIGNATURE, None
    return evaluate_verified(body, key.key_id, ctx)


def evaluate_verified(body, key_id, ctx):
    """Checks 3-11 on bytes whose signature the key `key_id` verified."""
    try:
        m = rules.Manifest(jsonr.loads(body))
    except ValueError:
        return P.REJECT, P.MANIFEST_MALFORMED, None
    if m.key_id != key_id: return P.REJECT, P.KEY_MISMATCH, m
    decision, reason = check(m, ctx)
    return decision, reason, m
