"""The store the host adapter keeps in the flash file's nvs partition, in the format of the C POSIX
port (firmware/port/posix/otaml_port_posix.c), so `otaml-sim --flash FILE info` reads it too: two
halves, each a header {magic "OVK1", seq, len, crc32} and lines "key<TAB>type<TAB>value"; a write goes
to the half not holding the newest copy, so a power cut mid-write leaves the previous one readable.
On an ESP32 the device adapter uses NVS itself (esp32.NVS) instead.
"""

import struct

from otaml.flashfmt import crc32

MAGIC = 0x314B564F
MAX_KEYS = 32
MAX_VALUE = 159


class KVStore:
    def __init__(self, read, erase, write, offset, size):
        self._read = read
        self._erase = erase
        self._write = write
        self.offset = offset
        self.half = size // 2
        self.items = {}  # key -> (type, value text)
        self.seq = 0
        self.current = 1  # so the first write goes to half 0
        self._load()

    def _load(self):
        best = None
        for h in (0, 1):
            base = self.offset + h * self.half
            magic, seq, n, crc = struct.unpack("<IIII", self._read(base, 16))
            if magic != MAGIC or n > self.half - 16:
                continue
            text = self._read(base + 16, n)
            if crc32(text) != crc:
                continue
            if best is None or seq > best[0]:
                best = (seq, h, text)
        if best is None:
            return
        self.seq, self.current, text = best
        for line in text.split(b"\n"):
            parts = line.split(b"\t", 2)
            if len(parts) == 3 and len(self.items) < MAX_KEYS:
                try:
                    self.items[parts[0].decode()] = (parts[1].decode(), parts[2].decode())
                except UnicodeError:
                    continue

    def _commit(self):
        text = "".join("%s\t%s\t%s\n" % (k, t, v) for k, (t, v) in self.items.items()).encode()
        if len(text) > self.half - 16:
            raise OSError("store full")
        target = 1 - self.current
        base = self.offset + target * self.half
        self._erase(base, self.half)
        self._write(base, struct.pack("<IIII", MAGIC, self.seq + 1, len(text), crc32(text)) + text)
        self.seq += 1
        self.current = target

    def _set(self, key, typ, value):
        if len(key) > 15:
            raise OSError("store key too long")
        if self.items.get(key) == (typ, value):
            return  # unchanged: no flash write
        if key not in self.items and len(self.items) >= MAX_KEYS:
            raise OSError("store full")
        self.items[key] = (typ, value)
        self._commit()

    def get_str(self, key):
        item = self.items.get(key)
        return item[1] if item and item[0] == "s" else None

    def get_u64(self, key):
        item = self.items.get(key)
        if not item or item[0] != "u" or not item[1].isdigit():
            return None
        return int(item[1])

    def set_str(self, key, value):
        # Device-provided text (a self-test detail) may contain anything: keep the store line-safe.
        clean = "".join(" " if c in "\n\t" else c for c in value)
        while len(clean.encode()) > MAX_VALUE:
            clean = clean[:-1]
        self._set(key, "s", clean)

    def set_u64(self, key, value):
        self._set(key, "u", str(int(value)))

    def erase(self, key):
        if key in self.items:
            del self.items[key]
            self._commit()
