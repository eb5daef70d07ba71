"""Content-addressed binaries: blobs/sha256/<aa>/<hex>. Uploads are staged in tmp/ on the same file
system, hashed while written, and renamed into place only when the release is committed, so a failed or
cancelled publish leaves nothing behind."""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from otaml.core.errors import OtamlError


class UploadTooLargeError(OtamlError):
    status = 413


@dataclass
class StagedBlob:
    path: Path
    sha256: str
    size: int


class Staging:
    """An upload being written to tmp/, hashed as it arrives. ``abort`` removes it."""

    def __init__(self, path: Path, max_bytes: int):
        self.path = path
        self.max_bytes = max_bytes
        self._digest = hashlib.sha256()
        self._size = 0
        self._f = open(path, "wb")  # noqa: SIM115 - closed by finish/abort

    def write(self, chunk: bytes) -> None:
        self._size += len(chunk)
        if self._size > self.max_bytes:
            raise UploadTooLargeError(f"expected a binary of at most {self.max_bytes} bytes, got more")
        self._digest.update(chunk)
        self._f.write(chunk)

    def finish(self) -> StagedBlob:
        self._f.close()
        return StagedBlob(self.path, self._digest.hexdigest(), self._size)

    def abort(self) -> None:
        self._f.close()
        self.path.unlink(missing_ok=True)


class BlobStore:
    def __init__(self, root: Path):
        self.root = Path(root)
        self.tmp = self.root / "tmp"
        self.tmp.mkdir(parents=True, exist_ok=True)
        for leftover in self.tmp.iterdir():  # a crash mid-upload; nothing references these
            leftover.unlink(missing_ok=True)

    def path_for(self, sha256: str) -> Path:
        return self.root / "blobs" / "sha256" / sha256[:2] / sha256

    def exists(self, sha256: str) -> bool:
        return self.path_for(sha256).is_file()

    def open_staging(self, *, max_bytes: int) -> Staging:
        return Staging(self.tmp / f"upload-{uuid.uuid4().hex}", max_bytes)

    def stage(self, chunks: Iterable[bytes], *, max_bytes: int) -> StagedBlob:
        staging = self.open_staging(max_bytes=max_bytes)
        try:
            for chunk in chunks:
                staging.write(chunk)
        except BaseException:
            staging.abort()
            raise
        return staging.finish()

    def commit(self, staged: StagedBlob) -> bool:
        """Move a staged upload into place. Returns True if the blob is new (so a rollback removes it)."""
        final = self.path_for(staged.sha256)
        if final.exists():
            staged.path.unlink(missing_ok=True)
            return False
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(staged.path, final)
        return True

    def discard(self, staged: StagedBlob) -> None:
        staged.path.unlink(missing_ok=True)

    def remove(self, sha256: str) -> None:
        self.path_for(sha256).unlink(missing_ok=True)
