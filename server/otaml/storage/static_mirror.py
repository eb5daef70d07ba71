"""The static mirror: the URL layout devices use, as plain files any web server or CDN can serve.

    static/firmware.json[.sig]                  the default channel
    static/channels/<channel>/firmware.json[.sig]
    static/binaries/<sha256>/<filename>         hard links to the content-addressed blobs
    static/keyset.json[.sig], static/keysets/<version>.json[.sig]   the key-set chain (newest, each)

It is derived from the database and rewritten at start-up, so a crash between a commit and a mirror
update heals on the next start.
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}")
    tmp.write_bytes(data)
    os.replace(tmp, path)


class StaticMirror:
    def __init__(self, root: Path, default_channel: str):
        self.root = Path(root)
        self.default_channel = default_channel

    def manifest_paths(self, channel: str) -> list[Path]:
        paths = [self.root / "channels" / channel / "firmware.json"]
        if channel == self.default_channel:
            paths.append(self.root / "firmware.json")
        return paths

    def write_manifest(self, channel: str, body: bytes, signature: str) -> None:
        # The .sig goes first: a reader that sees the new manifest must never pair it with the old
        # signature for longer than a rename (a mismatch is refused by devices and retried next poll).
        for path in self.manifest_paths(channel):
            _atomic_write(path.with_name(path.name + ".sig"), signature.encode() + b"\n")
            _atomic_write(path, body)

    def link_binary(self, sha256: str, filename: str, blob: Path) -> None:
        target = self.root / "binaries" / sha256 / filename
        if target.exists():
            return
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{filename}.{uuid.uuid4().hex}")
        try:
            os.link(blob, tmp)
        except OSError:  # another file system: copy instead
            shutil.copyfile(blob, tmp)
        os.replace(tmp, target)

    def write_keysets(self, chain: list) -> None:  # list[KeySet], oldest first
        for row in chain:
            path = self.root / "keysets" / f"{row.keyset_version}.json"
            _atomic_write(path.with_name(path.name + ".sig"), row.signature.encode() + b"\n")
            _atomic_write(path, row.body)
        if chain:
            _atomic_write(self.root / "keyset.json.sig", chain[-1].signature.encode() + b"\n")
            _atomic_write(self.root / "keyset.json", chain[-1].body)
