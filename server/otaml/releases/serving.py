"""What a manifest poll is answered with: a signed manifest and its ETag, held in memory by the fleet
policy (rollouts/policy.py) so polls never touch the database."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from otaml.models import Manifest


@dataclass(frozen=True)
class ServedManifest:
    body: bytes
    signature: str
    key_id: str
    etag: str
    manifest_version: int


def served(m: Manifest) -> ServedManifest:
    etag = '"' + hashlib.sha256(m.body).hexdigest()[:32] + '"'
    return ServedManifest(m.body, m.signature, m.key_id, etag, m.manifest_version)
