"""An independent reader of ESP-IDF NVS partitions (format version 2, as documented in ESP-IDF's
components/nvs_flash: pages, entry-state bitmaps, CRC32 of headers, entries and data), strict: any
page or entry that does not check out raises, so a test that reads what the simulator wrote proves
it wrote what ESP-IDF would read. Written for the tests, apart from the simulator's C and the MicroPython
store."""

from __future__ import annotations

import struct
import zlib

PAGE, ENTRY, ENTRIES = 4096, 32, 126
ACTIVE, FULL, FREEING, UNINIT = 0xFFFFFFFE, 0xFFFFFFFC, 0xFFFFFFF8, 0xFFFFFFFF
INTS = {0x01: "<B", 0x11: "<b", 0x02: "<H", 0x12: "<h", 0x04: "<I", 0x14: "<i", 0x08: "<Q", 0x18: "<q"}
STR, BLOB_DATA, BLOB_IDX = 0x21, 0x42, 0x48


class NvsError(Exception):
    pass


def crc(data: bytes) -> int:
    return zlib.crc32(data, 0xFFFFFFFF) & 0xFFFFFFFF


def read(partition: bytes) -> dict[str, dict[str, int | str | bytes]]:
    """{namespace: {key: value}} of the live items; strings without their NUL, blobs joined."""
    if len(partition) % PAGE:
        raise NvsError(f"expected whole 4096-byte pages, got {len(partition)} bytes")
    pages = []
    for p in range(len(partition) // PAGE):
        page = partition[p * PAGE:(p + 1) * PAGE]
        state, seq = struct.unpack_from("<II", page)
        if state == UNINIT:
            if page != b"\xff" * PAGE:
                raise NvsError(f"page {p}: uninitialized state but not erased")
            continue
        if state not in (ACTIVE, FULL, FREEING):
            raise NvsError(f"page {p}: state {state:#x}")
        if page[8] != 0xFE or crc(page[4:28]) != struct.unpack_from("<I", page, 28)[0]:
            raise NvsError(f"page {p}: bad version or header CRC")
        pages.append((seq, p, page))
    if len({s for s, _, _ in pages}) != len(pages):
        raise NvsError("two pages with one sequence number")
    items: dict[tuple[int, str], tuple[int, bytes]] = {}
    chunks: dict[tuple[int, str], dict[int, bytes]] = {}
    for _seq, p, page in sorted(pages):
        states = [(page[32 + e // 4] >> ((e % 4) * 2)) & 3 for e in range(ENTRIES)]
        e = 0
        while e < ENTRIES:
            if states[e] != 2:
                if states[e] not in (0, 3):
                    raise NvsError(f"page {p} entry {e}: illegal state {states[e]}")
                e += 1
                continue
            en = page[64 + e * ENTRY:64 + (e + 1) * ENTRY]
            if crc(en[0:4] + en[8:32]) != struct.unpack_from("<I", en, 4)[0]:
                raise NvsError(f"page {p} entry {e}: written entry with a bad CRC")
            ns, typ, span = en[0], en[1], en[2]
            key = en[8:24].split(b"\x00", 1)[0].decode()
            if span < 1 or e + span > ENTRIES or any(s != 2 for s in states[e:e + span]):
                raise NvsError(f"page {p} entry {e}: span {span} does not fit its written entries")
            if typ in (STR, BLOB_DATA):
                size, data_crc = struct.unpack_from("<H", en, 24)[0], struct.unpack_from("<I", en, 28)[0]
                data = page[64 + (e + 1) * ENTRY:64 + (e + 1) * ENTRY + size]
                if span != 1 + (size + 31) // 32 or crc(data) != data_crc:
                    raise NvsError(f"page {p} entry {e}: {key!r} data CRC or span wrong")
                if typ == STR:
                    if (ns, key) in items:
                        raise NvsError(f"{key!r} is live twice")
                    if not data.endswith(b"\x00"):
                        raise NvsError(f"{key!r}: string without its NUL")
                    items[(ns, key)] = (typ, data[:-1])
                else:
                    chunks.setdefault((ns, key), {})[en[3]] = data
            elif typ in INTS or typ == BLOB_IDX:
                if span != 1 or (ns, key) in items:
                    raise NvsError(f"{key!r}: a scalar spanning {span}, or live twice")
                items[(ns, key)] = (typ, en[24:32])
            else:
                raise NvsError(f"page {p} entry {e}: type {typ:#x}")
            e += span
    names = {struct.unpack_from("<B", v, 0)[0]: k for (ns, k), (t, v) in items.items() if ns == 0 and t == 0x01}
    out: dict[str, dict[str, int | str | bytes]] = {n: {} for n in names.values()}
    for (ns, key), (typ, raw) in items.items():
        if ns == 0:
            continue
        if ns not in names:
            raise NvsError(f"{key!r} in namespace index {ns}, which no namespace entry names")
        if typ == STR:
            out[names[ns]][key] = raw.decode()
        elif typ == BLOB_IDX:
            size, count, start = struct.unpack_from("<IBB", raw)
            parts = chunks.get((ns, key), {})
            out[names[ns]][key] = b"".join(parts.get(start + i, b"") for i in range(count))[:size]
        else:
            out[names[ns]][key] = struct.unpack_from(INTS[typ], raw)[0]
    return out
