"""Streaming guard for an image download: hashes as bytes arrive and refuses anything past the declared
size, so an endless or oversized response costs at most `size` bytes of flash writes (the C core's
otaml_download.c).
"""

import hashlib


class SizeError(ValueError):
    pass


class Guard:
    def __init__(self, expected_size):
        self.expected_size = expected_size
        self.received = 0
        self._sha = hashlib.sha256()
        self.spent = False

    def feed(self, data):
        """Account for the next bytes; SizeError (nothing hashed) if they would pass the declared size."""
        if len(data) > self.expected_size - self.received:
            raise SizeError("more than the declared %d bytes" % self.expected_size)
        self._sha.update(data)
        self.received += len(data)

    def finish(self, expected_sha256):
        """"ok", "size" (fewer bytes than declared) or "hash". The guard is spent afterwards."""
        if self.spent:
            raise ValueError("the guard was already finished")
        digest = self._sha.digest()
        self.spent = True
        if self.received != self.expected_size:
            return "size"
        # Not secret: the expected digest is in the signed manifest, so a plain compare is fine.
        return "ok" if digest == expected_sha256 else "hash"
