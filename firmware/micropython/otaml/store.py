"""The store the host adapter keeps in the flash file's nvs partition: ESP-IDF's NVS format, as the C
POSIX port writes it (firmware/port/posix/sim_nvs.h has the layout), so `otaml-sim --flash FILE info`
reads it, an image from esp-idf-nvs-partition-gen (`release provision`) provisions it, and a power cut
anywhere leaves each key with its old or its new value. Namespace "otaml"; strings and u64 values.
On an ESP32 the device adapter uses NVS itself (esp32.NVS) instead.
"""

import struct

from otaml.flashfmt import crc32

PAGE = 4096
ENTRIES = 126
ENTRY = 32
FIRST = 64
PS_UNINIT = 0xFFFFFFFF
PS_ACTIVE = 0xFFFFFFFE
PS_FULL = 0xFFFFFFFC
PS_FREEING = 0xFFFFFFF8
ES_EMPTY = 3
ES_WRITTEN = 2
ES_ERASED = 0
T_U8 = 0x01
T_U64 = 0x08
T_STR = 0x21
T_BLOB_DATA = 0x42
T_BLOB = 0x41
_INTS = {0x01: "<B", 0x11: "<b", 0x02: "<H", 0x12: "<h", 0x04: "<I", 0x14: "<i", 0x08: "<Q", 0x18: "<q"}
MAX_STR = 4000
NAMESPACE = "otaml"


def _crc(data):
    return crc32(data, 0xFFFFFFFF)


class KVStore:
    def __init__(self, read, erase, write, offset, size):
        self._read = read
        self._erase = erase
        self._write = write
        self.offset = offset
        self.pages = size // PAGE
        self.buf = bytearray(read(offset, size))
        self.active = -1
        self.next_free = 0
        self._cache = None  # the validated items, until the next write
        self._repair()

    # ---- primitives ----

    def _w(self, at, data):
        self._cache = None
        self._write(self.offset + at, bytes(data))
        for i in range(len(data)):
            self.buf[at + i] &= data[i]

    def _erase_page(self, p):
        self._cache = None
        self._erase(self.offset + p * PAGE, PAGE)
        self.buf[p * PAGE:(p + 1) * PAGE] = b"\xff" * PAGE

    def _pstate(self, p):
        return struct.unpack_from("<I", self.buf, p * PAGE)[0]

    def _seq(self, p):
        return struct.unpack_from("<I", self.buf, p * PAGE + 4)[0]

    def _in_use(self, p):
        base = p * PAGE
        ok = _crc(self.buf[base + 4:base + 28]) == struct.unpack_from("<I", self.buf, base + 28)[0]
        return ok and self._pstate(p) in (PS_ACTIVE, PS_FULL, PS_FREEING)

    def _estate(self, p, e):
        return (self.buf[p * PAGE + 32 + e // 4] >> ((e % 4) * 2)) & 3

    def _set_estates(self, p, first, count, state):
        bm = bytearray(self.buf[p * PAGE + 32:p * PAGE + 64])
        for e in range(first, min(first + count, ENTRIES)):
            shift = (e % 4) * 2
            bm[e // 4] = (bm[e // 4] & ~(3 << shift) & 0xFF) | (state << shift)
        self._w(p * PAGE + 32, bm)

    def _eat(self, p, e):
        return p * PAGE + FIRST + e * ENTRY

    def _entry_crc(self, en):
        return _crc(bytes(en[0:4]) + bytes(en[8:32]))

    def _item(self, p, e):
        """(ns, type, span, key, size) of a valid item whose header is (p, e), else None."""
        if self._estate(p, e) != ES_WRITTEN:
            return None
        at = self._eat(p, e)
        en = self.buf[at:at + ENTRY]
        if self._entry_crc(en) != struct.unpack_from("<I", en, 4)[0]:
            return None
        ns, typ, span = en[0], en[1], en[2]
        raw = bytes(en[8:24])
        if b"\x00" not in raw or span == 0 or e + span > ENTRIES:
            return None
        for i in range(1, span):
            if self._estate(p, e + i) != ES_WRITTEN:
                return None
        size = 0
        if typ in (T_STR, T_BLOB_DATA, T_BLOB):
            size = struct.unpack_from("<H", en, 24)[0]
            if span != 1 + (size + ENTRY - 1) // ENTRY:
                return None
            if _crc(self.buf[at + ENTRY:at + ENTRY + size]) != struct.unpack_from("<I", en, 28)[0]:
                return None
        elif span != 1:
            return None
        try:
            key = raw[:raw.index(b"\x00")].decode()
        except UnicodeError:
            return None
        return ns, typ, span, key, size

    def _ordered(self):
        used = [p for p in range(self.pages) if self._in_use(p)]
        return sorted(used, key=self._seq)

    def _items(self, pages=None):
        if pages is None:
            if self._cache is None:
                self._cache = list(self._scan(self._ordered()))
            return self._cache
        return list(self._scan(pages))

    def _scan(self, pages):
        for p in pages:
            e = 0
            while e < ENTRIES:
                it = self._item(p, e)
                if it is None:
                    e += 1
                    continue
                yield p, e, it
                e += it[2]

    def _find(self, ns, key, skip=-1):
        found = None
        for p, e, it in self._items():
            if p != skip and it[0] == ns and it[1] != T_BLOB_DATA and it[3] == key:
                found = (p, e, it)
        return found

    # ---- pages ----

    def _init_page(self, p):
        order = self._ordered()
        seq = self._seq(order[-1]) + 1 if order else 0
        h = bytearray(b"\xff" * 32)
        struct.pack_into("<II", h, 0, PS_ACTIVE, seq)
        h[8] = 0xFE
        struct.pack_into("<I", h, 28, _crc(h[4:28]))
        self._w(p * PAGE, h)
        self.active = p
        self.next_free = 0

    def _copy(self, p, e, span):
        at = self._eat(p, e)
        self._w(self._eat(self.active, self.next_free), self.buf[at:at + span * ENTRY])
        self._set_estates(self.active, self.next_free, span, ES_WRITTEN)
        self.next_free += span

    def _drain(self, victim):
        for p, e, it in list(self._items([victim])):
            if self._find(it[0], it[3], skip=victim) is None:
                if self.next_free + it[2] > ENTRIES:
                    raise OSError("store full")
                self._copy(p, e, it[2])
        self._erase_page(victim)

    def _reserve(self, span):
        for _ in range(2 * self.pages + 2):
            if self.active >= 0 and self.next_free + span <= ENTRIES:
                return
            if self.active >= 0:
                self._w(self.active * PAGE, struct.pack("<I", PS_FULL))
                self.active = -1
            free = [p for p in range(self.pages) if self._pstate(p) == PS_UNINIT]
            if not free:
                raise OSError("store full")
            if len(free) >= 2:
                self._init_page(free[0])
                continue
            victim, most = -1, 0
            for p in range(self.pages):
                if self._pstate(p) == PS_FULL and self._in_use(p):
                    erased = sum(1 for e in range(ENTRIES) if self._estate(p, e) == ES_ERASED)
                    if erased > most:
                        victim, most = p, erased
            if victim < 0:
                raise OSError("store full")
            self._w(victim * PAGE, struct.pack("<I", PS_FREEING))
            self._init_page(free[0])
            self._drain(victim)
        raise OSError("store full")

    def _repair(self):
        for p in range(self.pages):
            erased = self._pstate(p) == PS_UNINIT and self.buf[p * PAGE:(p + 1) * PAGE] == b"\xff" * PAGE
            if not erased and not self._in_use(p):
                self._erase_page(p)
        order = self._ordered()
        for p in order:
            e = 0
            while e < ENTRIES:
                st = self._estate(p, e)
                it = self._item(p, e)
                at = self._eat(p, e)
                if st == ES_EMPTY and self.buf[at:at + ENTRY] != b"\xff" * ENTRY:
                    self._set_estates(p, e, 1, ES_ERASED)  # written, never marked
                elif st == ES_WRITTEN and it is None:
                    self._set_estates(p, e, 1, ES_ERASED)
                e += it[2] if it else 1
        for p, e, it in list(self._items()):
            newest = self._find(it[0], it[3])
            if it[1] != T_BLOB_DATA and newest and (newest[0], newest[1]) != (p, e) and self._pstate(p) != PS_FREEING:
                self._set_estates(p, e, it[2], ES_ERASED)
        self.active = -1
        for p in self._ordered():
            if self._pstate(p) == PS_ACTIVE:
                if self.active >= 0:
                    self._w(self.active * PAGE, struct.pack("<I", PS_FULL))
                self.active = p
        if self.active >= 0:
            self.next_free = max([e + 1 for e in range(ENTRIES) if self._estate(self.active, e) != ES_EMPTY] or [0])
        for p in self._ordered():
            if self._pstate(p) == PS_FREEING:
                if self.active < 0:
                    free = [q for q in range(self.pages) if self._pstate(q) == PS_UNINIT]
                    if not free:
                        raise OSError("store full")
                    self._init_page(free[0])
                self._drain(p)

    # ---- items ----

    def _ns(self, create):
        found = self._find(0, NAMESPACE)
        if found and found[2][1] == T_U8:
            return self.buf[self._eat(found[0], found[1]) + 24]
        if not create:
            return None
        used = set(self.buf[self._eat(p, e) + 24] for p, e, it in self._items() if it[0] == 0 and it[1] == T_U8)
        index = 1
        while index in used:
            index += 1
        self._append(0, T_U8, NAMESPACE, bytes([index]) + b"\xff" * 7, b"")
        return index

    def _append(self, ns, typ, key, data8, data):
        span = 1 + (len(data) + ENTRY - 1) // ENTRY
        self._reserve(span)
        item = bytearray(b"\xff" * (span * ENTRY))
        item[0], item[1], item[2], item[3] = ns, typ, span, 0xFF
        k = key.encode()
        item[8:24] = k + b"\x00" * (16 - len(k))
        item[24:32] = data8
        item[ENTRY:ENTRY + len(data)] = data
        struct.pack_into("<I", item, 4, self._entry_crc(item))
        self._w(self._eat(self.active, self.next_free), item)
        self._set_estates(self.active, self.next_free, span, ES_WRITTEN)
        self.next_free += span

    def _set(self, key, typ, data8, data):
        if not key or len(key) > 15:
            raise OSError("store key too long")
        ns = self._ns(True)
        old = self._find(ns, key)
        if old and old[2][1] == typ:
            at = self._eat(old[0], old[1])
            same = self.buf[at + ENTRY:at + ENTRY + old[2][4]] == data if data else self.buf[at + 24:at + 32] == data8
            if same:
                return  # unchanged: no flash write
        self._append(ns, typ, key, data8, data)
        if old:
            newest = (self.active, self.next_free)
            for p, e, it in list(self._items()):
                if it[0] == ns and it[1] != T_BLOB_DATA and it[3] == key and (p, e + it[2]) != newest:
                    self._set_estates(p, e, it[2], ES_ERASED)

    def _get(self, key):
        ns = self._ns(False)
        return None if ns is None else self._find(ns, key)

    def get_str(self, key):
        found = self._get(key)
        if not found or found[2][1] != T_STR or found[2][4] == 0:
            return None
        at = self._eat(found[0], found[1]) + ENTRY
        raw = bytes(self.buf[at:at + found[2][4]])
        raw = raw[:raw.index(b"\x00")] if b"\x00" in raw else raw
        try:
            return raw.decode()
        except UnicodeError:
            return None

    def get_u64(self, key):
        found = self._get(key)
        if not found or found[2][1] not in _INTS:
            return None
        return struct.unpack_from(_INTS[found[2][1]], self.buf, self._eat(found[0], found[1]) + 24)[0]

    def set_str(self, key, value):
        data = value.encode().replace(b"\x00", b" ") + b"\x00"
        if len(data) > MAX_STR:
            raise OSError("store value too long")
        data8 = struct.pack("<HHI", len(data), 0xFFFF, _crc(data))
        self._set(key, T_STR, data8, data)

    def set_u64(self, key, value):
        self._set(key, T_U64, struct.pack("<Q", int(value)), b"")

    def erase(self, key):
        ns = self._ns(False)
        if ns is None:
            return
        while True:
            found = self._find(ns, key)
            if not found:
                return
            self._set_estates(found[0], found[1], found[2][2], ES_ERASED)
