"""ESP-IDF's flash formats, read and written from raw partition bytes, shared by both adapters:
  - the binary partition table at 0x8000 (esp_partition_info_t entries, gen_esp32part.py);
  - otadata: two sectors, each an esp_ota_select_entry_t {ota_seq, seq_label[20], ota_state, crc} with
    crc = crc32_le(UINT32_MAX, &ota_seq, 4); the boot slot is (highest valid seq - 1) % ota_count
    (esp32.Partition can switch the boot slot but cannot tell a slot's state);
  - the app image: header, segments, checksum, appended SHA-256, and the esp_app_desc_t at the start
    of the first segment (which esp32.Partition cannot read either).
Hostile flash contents are the normal case: every reader here returns "not valid" rather than raising.
"""

import hashlib
import struct

import binascii


def _crc32_bits(data, crc=0):
    """For a build without binascii.crc32: the same polynomial, bit by bit."""
    crc ^= 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ 0xEDB88320 if crc & 1 else crc >> 1
    return crc ^ 0xFFFFFFFF


_crc32 = getattr(binascii, "crc32", _crc32_bits)

SECTOR = 4096
PARTITION_TABLE_OFFSET = 0x8000
TYPE_APP = 0x00
TYPE_DATA = 0x01
SUBTYPE_OTA_0 = 0x10
SUBTYPE_DATA_OTA = 0x00
SEQ_ERASED = 0xFFFFFFFF
APP_DESC_MAGIC = 0xABCD5432

# esp_ota_img_states_t as otadata stores them
ST_NEW = 0
ST_PENDING_VERIFY = 1
ST_VALID = 2
ST_INVALID = 3
ST_ABORTED = 4
ST_UNDEFINED = 0xFFFFFFFF
STATE_NAMES = {0: "new", 1: "pending_verify", 2: "valid", 3: "invalid", 4: "aborted"}


def crc32(data, crc=0):
    return _crc32(data, crc) & 0xFFFFFFFF


def state_name(raw):
    return STATE_NAMES.get(raw, "undefined")


# ---- partition table ----

class Partition:
    def __init__(self, label, ptype, subtype, offset, size):
        self.label = label
        self.type = ptype
        self.subtype = subtype
        self.offset = offset
        self.size = size


def parse_partition_table(raw):
    """Entries up to the first one without the 0x50AA magic (the MD5 entry or erased flash)."""
    out = []
    for i in range(0, len(raw) - 31, 32):
        magic, ptype, subtype, offset, size, label, _flags = struct.unpack_from("<HBBII16sI", raw, i)
        if magic != 0x50AA:
            break
        end = label.find(b"\x00")
        try:
            name = (label if end < 0 else label[:end]).decode()
        except UnicodeError:
            name = ""
        out.append(Partition(name, ptype, subtype, offset, size))
    return out


def ota_slots(parts):
    """App OTA partitions ordered by slot number (ota_0, ota_1, ...)."""
    slots = [p for p in parts if p.type == TYPE_APP and SUBTYPE_OTA_0 <= p.subtype < SUBTYPE_OTA_0 + 16]
    slots.sort(key=lambda p: p.subtype)
    return slots


# ---- otadata ----

class Entry:
    def __init__(self, raw):
        self.seq, self.label, self.state, self.crc = struct.unpack_from("<I20sII", raw, 0)

    def wellformed(self):
        return self.seq != SEQ_ERASED and self.crc == entry_crc(self.seq)

    def valid(self):
        """What the bootloader may select: well-formed and neither INVALID nor ABORTED."""
        return self.wellformed() and self.state not in (ST_INVALID, ST_ABORTED)


def entry_crc(seq):
    return crc32(struct.pack("<I", seq), 0xFFFFFFFF)


def entry_bytes(seq, state):
    return struct.pack("<I20sII", seq, b"\xff" * 20, state, entry_crc(seq))


def active(entries):
    """bootloader_common_get_active_otadata: index of the valid entry with the highest seq, or -1."""
    v0, v1 = entries[0].valid(), entries[1].valid()
    if v0 and v1:
        return 0 if entries[0].seq >= entries[1].seq else 1
    return 0 if v0 else (1 if v1 else -1)


def slot_of(entry, n_slots):
    return (entry.seq - 1) % n_slots


def slot_state(entries, slot, n_slots):
    """esp_ota_get_state_partition: the state of the newest well-formed entry selecting the slot."""
    best = None
    for e in entries:
        if e.wellformed() and slot_of(e, n_slots) == slot and (best is None or e.seq > best.seq):
            best = e
    return ST_UNDEFINED if best is None else best.state


def next_seq(entries, slot, n_slots):
    """esp_ota_set_boot_partition's sequence: the smallest seq above the active one selecting slot."""
    a = active(entries)
    current = entries[a].seq if a >= 0 else 0
    base = (slot + 1) % n_slots
    i = 0
    while current > base + i * n_slots:
        i += 1
    seq = base + i * n_slots
    return seq if seq else n_slots


# ---- app images ----

class Image:
    """What esp_image_verify and the app description say about a slot."""

    def __init__(self):
        self.valid = False
        self.version = ""
        self.project = ""
        self.secure_version = 0
        self.length = 0


def _cstr(raw):
    end = raw.find(b"\x00")
    return (raw if end < 0 else raw[:end]).decode()


def _xor_fold(data):
    """XOR of all bytes, by folding one big integer (a byte loop costs seconds on 1.5 MB)."""
    x = int.from_bytes(data, "little")
    width = len(data)
    while width > 1:
        half = (width + 1) // 2
        x = (x ^ (x >> (8 * half))) & ((1 << (8 * half)) - 1)
        width = half
    return x


def verify_image(read, part_size, chunk=SECTOR):
    """Validate the image at the start of a partition as the bootloader does (header magic, segment
    bounds, checksum, appended SHA-256) and read its esp_app_desc_t. read(offset, n) reads the
    partition. Returns an Image (valid=False for anything that does not check out)."""
    img = Image()
    try:
        hdr = read(0, 24)
        if len(hdr) != 24 or hdr[0] != 0xE9 or not 0 < hdr[1] <= 16:
            return img
        nseg = hdr[1]
        hash_appended = hdr[23] == 1
        sha = hashlib.sha256()
        sha.update(hdr)
        checksum = 0xEF
        pos = 24
        version = project = ""
        secure_version = 0
        for s in range(nseg):
            seg = read(pos, 8)
            seg_len = struct.unpack_from("<I", seg, 4)[0]
            if seg_len > part_size or pos + 8 + seg_len > part_size:
                return img
            sha.update(seg)
            pos += 8
            if s == 0 and seg_len >= 256:  # esp_app_desc_t opens the first (DROM) segment
                desc = read(pos, 256)
                if struct.unpack_from("<I", desc, 0)[0] != APP_DESC_MAGIC:
                    return img
                secure_version = struct.unpack_from("<I", desc, 4)[0]
                version = _cstr(desc[16:47])
                project = _cstr(desc[48:79])
            done = 0
            while done < seg_len:
                data = read(pos + done, min(chunk, seg_len - done))
                checksum ^= _xor_fold(data)
                sha.update(data)
                done += len(data)
            pos += seg_len
        pad = 15 - (pos % 16)  # zero padding up to the checksum byte, at an offset of 15 mod 16
        tail = read(pos, pad + 1)
        sha.update(tail)
        pos += pad + 1
        if tail[pad] != checksum:
            return img
        if hash_appended:
            if read(pos, 32) != sha.digest():
                return img
            pos += 32
        if not version:
            return img
        img.valid = True
        img.version = version
        img.project = project
        img.secure_version = secure_version
        img.length = pos
    except (ValueError, IndexError, UnicodeError, OSError):
        return Image()
    return img


def app_desc(read):
    """The esp_app_desc_t of an image without validating the whole image (the running one was
    validated by the bootloader): version, project and secure_version, or an Image with valid=False."""
    img = Image()
    try:
        hdr = read(0, 32)
        if hdr[0] != 0xE9 or struct.unpack_from("<I", hdr, 28)[0] < 256:
            return img
        desc = read(32, 256)
        if struct.unpack_from("<I", desc, 0)[0] != APP_DESC_MAGIC:
            return img
        img.secure_version = struct.unpack_from("<I", desc, 4)[0]
        img.version = _cstr(desc[16:47])
        img.project = _cstr(desc[48:79])
        img.valid = bool(img.version)
    except (ValueError, IndexError, UnicodeError, OSError):
        return Image()
    return img
