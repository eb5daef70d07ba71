"""The host adapter: this package on the WebAssembly MicroPython under Node (firmware/micropython/host),
as otaml-sim runs the C core. The network is js.fetch; the flash is a 4 MB file with otaml-sim's layout
(partition table, otadata, the store in nvs), read and written through the runner's NOR flash chip, so
`otaml-sim --flash FILE flash IMAGE` prepares it and `otaml-sim --flash FILE info` reads it. A reboot
ends this interpreter; the runner starts a new one on the same flash file.

Like otaml-sim, the running image decides what the device is: its esp_app_desc_t version, the model
and card it links in (resolved through the image's simulator symbol table, as otaml-sim does) and
simulation directives (`OTAML-SIM:selftest=fail`, `OTAML-SIM:crash-on-boot`, `OTAML-SIM:lose-token`),
so a test publishes genuine, signed images that misbehave. The station gets its IP address
`ip_after_ms` after each boot, like otaml-sim's.
"""

import asyncio
import gc
import json
import random
import struct
import time

import js
import otaml_hostjs as H

from otaml import app, flashfmt as F, ml, sig
from otaml import agent as agentmod
from otaml.port import Health, PortError, Response, SlotInfo
from otaml.store import KVStore

DIRECTIVE_SELFTEST_FAIL = b"OTAML-SIM:selftest=fail"
DIRECTIVE_CRASH_ON_BOOT = b"OTAML-SIM:crash-on-boot"
DIRECTIVE_LOSE_TOKEN = b"OTAML-SIM:lose-token"
SIM_SYMBOLS = b"OTAML-SIM-SYMBOLS:"
_LEVELS = {"E": 0, "W": 1, "I": 2, "D": 3}


class Reboot(Exception):
    """A reset: the runner starts a new interpreter on the same flash file."""


# ---- the flash chip ----

def flash_read(addr, n):
    return bytes(H.flash_read(addr, n))


def flash_write(addr, data):
    if data:
        H.flash_write(addr, bytes(data).hex())


def flash_erase(addr, n):
    H.flash_erase(addr, n)


# ---- network ----

class Http:
    def __init__(self, download_rate=0):
        self.download_rate = download_rate  # bytes/s, 0: as fast as it comes (a slow radio otherwise)

    @staticmethod
    def _headers(pairs):
        h = js.Headers.new()
        for name, value in pairs:
            h.set(name, value)
        return h

    async def get(self, url, headers=(), sink=None, resp=None):
        resp = resp if resp is not None else Response()
        try:
            r = await js.fetch(url, {"headers": self._headers(headers)})
        except Exception:  # JsException: connection refused, reset, DNS
            resp.error = "transport"
            return resp
        resp.status = r.status
        for name in ("etag", "x-otaml-signature", "x-otaml-poll-interval", "x-otaml-config",
                     "x-otaml-config-signature"):
            value = r.headers.get(name)
            if value is not None:
                resp.take_header(name, value)
        if not (200 <= r.status < 300) or sink is None or r.body is None:
            try:
                await r.arrayBuffer()  # drain, so the connection can be reused
            except Exception:
                pass
            return resp
        reader = r.body.getReader()
        received = 0
        started = time.ticks_ms()
        try:
            while True:
                chunk = await reader.read()
                if chunk.done:
                    break
                data = bytes(chunk.value)
                if not sink(data):
                    resp.error = "aborted"
                    await reader.cancel()
                    break
                received += len(data)
                if self.download_rate:
                    due = received * 1000 // self.download_rate - time.ticks_diff(time.ticks_ms(), started)
                    if due > 0:
                        await asyncio.sleep_ms(due)
        except Exception:  # the body was cut short
            resp.error = "transport"
        return resp

    async def post(self, url, headers, content_type, body):
        try:
            r = await js.fetch(url, {"method": "POST", "body": body,
                                     "headers": self._headers(list(headers) + [("Content-Type", content_type)])})
            await r.arrayBuffer()
            return r.status
        except Exception:
            return 0


# ---- the device ----

class HostPort:
    def __init__(self, cfg):
        self.cfg = cfg
        self.verbose = cfg.get("verbose", False)
        self.http = Http(cfg.get("download_rate", 0))
        self.parts = F.parse_partition_table(flash_read(F.PARTITION_TABLE_OFFSET, F.SECTOR))
        self.slots = F.ota_slots(self.parts)
        self.otadata = self._part("otadata")
        nvs = self._part("nvs")
        if len(self.slots) < 2 or self.otadata is None or nvs is None:
            raise OSError("the flash file holds no partition table with two OTA slots: run `otaml-sim flash` first")
        self.store = KVStore(flash_read, flash_erase, flash_write, nvs.offset, nvs.size)
        self.booted = 0
        self.booted_at = time.ticks_ms()
        self.min_free = None
        self._update = None  # [slot, size, written, erased_to] while an update is open

    def _part(self, label):
        for p in self.parts:
            if p.label == label:
                return p
        return None

    # log, time, random
    def log(self, level, tag, message):
        if level == "D" and not self.verbose:
            return
        print("%s (%d) %s: %s" % (level, time.ticks_ms(), tag, message))

    def trusted_time(self):
        return int(time.time()) if self.cfg.get("trusted_time", True) else 0

    def uptime_us(self):
        return time.ticks_us()

    def health(self):
        """The host device's own figures: the signal it was given, MicroPython's heap (gc), time since
        this boot, and why it booted (the runner says: poweron, then sw after each reboot)."""
        free = gc.mem_free()
        self.min_free = free if self.min_free is None or free < self.min_free else self.min_free
        return Health(rssi=self.cfg.get("rssi", -58), free_heap=free, min_free_heap=self.min_free,
                      uptime_s=time.ticks_diff(time.ticks_ms(), self.booted_at) // 1000,
                      reset_reason=self.cfg.get("reset_reason", "poweron"))

    async def network_wait(self, timeout_ms):
        """The simulated station has its address ip_after_ms after boot."""
        until_ip = self.cfg.get("ip_after_ms", 0) - time.ticks_diff(time.ticks_ms(), self.booted_at)
        if until_ip <= 0:
            return True
        await asyncio.sleep_ms(min(until_ip, timeout_ms))
        return until_ip <= timeout_ms

    def random(self):
        return random.getrandbits(30)

    # otadata
    def _entries(self):
        base = self.otadata.offset
        return [F.Entry(flash_read(base, 32)), F.Entry(flash_read(base + F.SECTOR, 32))]

    def _write_entry(self, idx, seq, state):
        addr = self.otadata.offset + idx * F.SECTOR
        flash_erase(addr, F.SECTOR)
        flash_write(addr, F.entry_bytes(seq, state))

    def set_state(self, slot, state):
        e = self._entries()
        a = F.active(e)
        if a < 0 or F.slot_of(e[a], len(self.slots)) != slot:
            raise PortError("state", "slot %d is not the selected one" % slot)
        self._write_entry(a, e[a].seq, state)

    def set_boot(self, slot):
        e = self._entries()
        a = F.active(e)
        self._write_entry(0 if a < 0 else 1 - a, F.next_seq(e, slot, len(self.slots)), F.ST_NEW)

    def image(self, slot):
        p = self.slots[slot]
        return F.verify_image(lambda off, n: flash_read(p.offset + off, n), p.size)

    def slot_info(self, slot):
        img = self.image(slot)
        state = F.state_name(F.slot_state(self._entries(), slot, len(self.slots)))
        return SlotInfo(self.slots[slot].label, state, img.version, img.project, img.secure_version)

    def bootloader(self):
        """The second-stage bootloader with rollback enabled (sim_bootloader_select): NEW becomes
        PENDING_VERIFY when booted; PENDING_VERIFY found at boot (a reset before confirmation) becomes
        ABORTED and the previous slot boots; a slot that does not verify is skipped. -1: nothing boots."""
        n = len(self.slots)
        while True:
            e = self._entries()
            a = F.active(e)
            slot = F.slot_of(e[a], n) if a >= 0 else 0
            if a >= 0 and e[a].state == F.ST_PENDING_VERIFY:
                self.log("W", "boot", "ota_%d was pending verification at reset: aborted, rolling back" % slot)
                self._write_entry(a, e[a].seq, F.ST_ABORTED)
                continue
            if not self.image(slot).valid:
                for s in range(n):
                    if s != slot and self.image(s).valid:
                        return s
                return -1
            if a >= 0 and e[a].state == F.ST_NEW:
                self._write_entry(a, e[a].seq, F.ST_PENDING_VERIFY)
            return slot

    def image_bytes(self, slot):
        img = self.image(slot)
        return flash_read(self.slots[slot].offset, img.length) if img.valid else b""

    # the port's slot functions
    def running_slot(self):
        return self.slot_info(self.booted)

    def _passive(self):
        return (self.booted + 1) % len(self.slots)

    def passive_slot_size(self):
        return self.slots[self._passive()].size

    def update_begin(self, size, resume_offset):
        p = self.slots[self._passive()]
        if self._update is not None:
            raise PortError("state", "an update is already open")
        if F.slot_state(self._entries(), self.booted, len(self.slots)) == F.ST_PENDING_VERIFY:
            raise PortError("state", "the running image is pending verification")
        if size > p.size or resume_offset > size:
            raise PortError("too_large")
        if resume_offset == 0:
            # esp_ota_begin under rollback: the inactive entry is invalidated, so a half-written
            # passive slot can never be selected through a stale entry.
            e = self._entries()
            a = F.active(e)
            if a >= 0 and e[1 - a].state != F.ST_INVALID:
                self._write_entry(1 - a, e[1 - a].seq, F.ST_INVALID)
        erased_to = (resume_offset + F.SECTOR - 1) // F.SECTOR * F.SECTOR
        self._update = [self._passive(), size, resume_offset, erased_to]

    def update_write(self, data):
        u = self._update
        if u is None:
            raise PortError("state")
        p = self.slots[u[0]]
        if u[2] == 0 and data and data[0] != 0xE9:
            raise PortError("image", "the first byte is not the image magic")
        end = u[2] + len(data)
        if end > p.size:
            raise PortError("too_large")
        if end > u[3]:
            new_to = (end + F.SECTOR - 1) // F.SECTOR * F.SECTOR
            flash_erase(p.offset + u[3], new_to - u[3])
            u[3] = new_to
        flash_write(p.offset + u[2], data)
        u[2] = end

    def update_read(self, offset, n):
        p = self.slots[self._update[0] if self._update else self._passive()]
        if offset + n > p.size:
            raise PortError("io")
        return flash_read(p.offset + offset, n)

    def update_abort(self):
        self._update = None

    def update_end(self):
        if self._update is None:
            raise PortError("state")
        slot = self._update[0]
        self._update = None
        if not self.image(slot).valid:
            raise PortError("image")
        self._written = slot
        return self.slot_info(slot)

    def update_activate(self):
        self.set_boot(self._written)

    def mark_valid(self):
        self.set_state(self.booted, F.ST_VALID)

    def mark_invalid_and_reboot(self):
        self.set_state(self.booted, F.ST_INVALID)
        self.reboot()

    def reboot(self):
        self.log("I", "port_host", "restarting")
        raise Reboot()


def _symbol(image, name):
    """_binary_<name>_start.._end of a file the image links in, through the simulator's symbol table
    (OTAML-SIM-SYMBOLS:, a u32 count, then per symbol a NUL-padded 32-byte name, the u32 distance from
    the table back to the data and the u32 length)."""
    at = image.find(SIM_SYMBOLS)
    if at < 0 or at + len(SIM_SYMBOLS) + 4 > len(image):
        return None
    p = at + len(SIM_SYMBOLS)
    count = struct.unpack_from("<I", image, p)[0]
    p += 4
    for _ in range(min(count, 64)):
        if p + 40 > len(image):
            return None
        sym = image[p:p + 32].rstrip(b"\x00")
        back, length = struct.unpack_from("<II", image, p + 32)
        p += 40
        if sym == name.encode() and back <= at and at - back + length <= len(image):
            return image[at - back:at - back + length]
    return None


async def _run(cfg):
    port = HostPort(cfg)
    slot = port.bootloader()
    if slot < 0:
        port.log("E", "boot", "no bootable app image in any slot")
        return "no_image"
    port.booted = slot
    part = port.slots[slot]
    port.log("I", "boot", "Loaded app from partition at offset 0x%x (%s)" % (part.offset, part.label))
    token = cfg.get("token") or ""
    if token:
        port.store.set_str("token", token)
    else:
        token = port.store.get_str("token")
        if not token:
            port.log("E", "otaml_host", "no device token: pass --token once (it is kept in the store)")
            return "no_token"
    image = port.image_bytes(slot)
    if DIRECTIVE_LOSE_TOKEN in image:
        port.log("W", "otaml_host", "simulated build that lost its credentials")
        token = "lost-token"
    if port.running_slot().state == "pending_verify" and DIRECTIVE_CRASH_ON_BOOT in image:
        port.log("E", "otaml_host", "simulated crash before the image confirmed itself")
        port.reboot()

    runner = app.MLRunner(port, None, lambda: None, cfg.get("ml_interval_ms") or 200)

    async def selftest():
        if DIRECTIVE_SELFTEST_FAIL in image:
            return False, "simulated self-test failure (%s)" % DIRECTIVE_SELFTEST_FAIL.decode()
        if runner.ml is not None:
            return runner.ml.health_check()
        return True, "ok (no model in this image)"

    model, card = _symbol(image, "amp_health_tflite"), _symbol(image, "amp_health_card_json")
    if model is not None and card is not None:
        try:
            runner.ml = ml.ML(port, card, model)
            runner.sensor = ml.Replay(cfg.get("samples", ""), runner.ml.card.n_features)
        except ml.CardError as e:
            port.log("E", "otaml_ml", "model card: %s" % e)
    else:
        port.log("I", "otaml_host", "this image carries no model: ML task not started")

    settings = agentmod.Settings(
        cfg["server"], cfg.get("channel", "stable"), cfg["device_id"], token, cfg.get("project", "otaml"),
        cfg.get("chip", "esp32"), sig.Keyring(cfg["manifest_keys"]), sig.Keyring(cfg["config_keys"]),
        selftest=selftest, config_apply=runner.apply_config,
        checkin_extra=(runner.ml.checkin_headers if runner.ml is not None else None),
        confirm_window_s=cfg.get("confirm_window_s", 300), confirm_backoff_min_ms=cfg.get("confirm_backoff_min_ms", 1000),
        confirm_backoff_max_ms=cfg.get("confirm_backoff_max_ms", 30000),
        unreachable_retakes=cfg.get("unreachable_retakes", 3), progress_min_bytes=cfg.get("progress_min_bytes", 262144))
    await app.run(port, settings, runner, cfg.get("polls", 0), cfg.get("interval_ms", 0))
    return "ok"


async def main():
    """One boot of the host device; the runner reads the outcome ("ok", "reboot", ...)."""
    cfg = json.loads(H.config)
    try:
        outcome = await _run(cfg)
    except Reboot:
        outcome = "reboot"
    H.set_outcome(outcome)
