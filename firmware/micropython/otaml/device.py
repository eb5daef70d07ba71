"""The device adapter: this package on an ESP32 running MicroPython's esp32 port.

Network: HTTP/1.1 over asyncio streams, TLS through `ssl` with the server's CA pinned (certificate
verification required; plain http only when the settings allow it, for a lab server). Flash:
`esp32.Partition` writes the passive slot (4 KB erases with ioctl(6), writes with an offset), switches
the boot slot (`set_boot()`, which validates the image) and confirms (`mark_app_valid_cancel_rollback`);
what Partition cannot tell, the slot states and the app description, is read from otadata and the
image through otaml.flashfmt. The store is NVS (namespace "otaml"), the same keys as the C firmware.

A self-test failure resets while the image is PENDING_VERIFY: the bootloader (rollback enabled in the
board definition) marks it ABORTED and boots the previous slot; the reason was stored before the reset.
"""

import asyncio
import gc
import struct
import time

import esp32
import machine

from otaml import flashfmt as F
from otaml.port import Health, PortError, Response, SlotInfo

# machine.reset_cause() -> X-Otaml-Reset-Reason (the ESP32 port maps esp_reset_reason() onto these).
RESET_CAUSES = {machine.PWRON_RESET: "poweron", machine.HARD_RESET: "ext", machine.WDT_RESET: "wdt",
                machine.DEEPSLEEP_RESET: "deepsleep", machine.SOFT_RESET: "sw"}

BLOCK = 4096
EPOCH_2000 = 946684800  # some ports count from 2000-01-01
TRUSTED_AFTER = 1704067200  # a clock before 2024 has not been set by SNTP
MAX_HEADER_LINE = 1024


class NvsStore:
    """get_str/get_u64/set_str/set_u64/erase over esp32.NVS; strings and u64 are blobs."""

    def __init__(self, namespace="otaml"):
        self.nvs = esp32.NVS(namespace)

    def _get(self, key, size):
        buf = bytearray(size)
        try:
            n = self.nvs.get_blob(key, buf)
        except OSError:
            return None
        return bytes(buf[:n])

    def get_str(self, key):
        raw = self._get(key, 160)
        if raw is None:
            return None
        try:
            return raw.decode()
        except UnicodeError:
            return None

    def get_u64(self, key):
        raw = self._get(key, 8)
        return struct.unpack("<Q", raw)[0] if raw is not None and len(raw) == 8 else None

    def set_str(self, key, value):
        raw = value.encode()[:159]
        self.nvs.set_blob(key, raw)
        self.nvs.commit()

    def set_u64(self, key, value):
        self.nvs.set_blob(key, struct.pack("<Q", value))
        self.nvs.commit()

    def erase(self, key):
        try:
            self.nvs.erase_key(key)
            self.nvs.commit()
        except OSError:
            pass  # absent


def _split_url(url):
    """(is_tls, host, port, path) of an http(s) URL."""
    if url.startswith("https://"):
        tls, rest, port = True, url[8:], 443
    elif url.startswith("http://"):
        tls, rest, port = False, url[7:], 80
    else:
        raise ValueError("not an http(s) URL")
    slash = rest.find("/")
    hostport, path = (rest, "/") if slash < 0 else (rest[:slash], rest[slash:])
    if hostport.startswith("["):
        end = hostport.find("]")
        host = hostport[1:end]
        if hostport[end + 1:end + 2] == ":":
            port = int(hostport[end + 2:])
    elif ":" in hostport:
        host, p = hostport.rsplit(":", 1)
        port = int(p)
    else:
        host = hostport
    return tls, host, port, path


class Http:
    """HTTP/1.1 over asyncio streams; TLS with the pinned CA."""

    def __init__(self, ca_der=None, allow_plain_http=False, timeout_s=30):
        self.ca_der = ca_der
        self.allow_plain_http = allow_plain_http
        self.timeout_s = timeout_s

    def _ssl(self):
        import ssl

        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(cadata=self.ca_der)
        return ctx

    async def _request(self, method, url, headers, body, sink, resp):
        tls, host, port, path = _split_url(url)
        if not tls and not self.allow_plain_http:
            raise OSError("plain http refused (allow_plain_http is off)")
        if tls and not self.ca_der:
            raise OSError("no pinned CA for https")
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(host, port, ssl=self._ssl() if tls else None), self.timeout_s)
        try:
            lines = ["%s %s HTTP/1.1" % (method, path), "Host: %s" % host, "Connection: close",
                     "User-Agent: otaml-micropython"]
            lines += ["%s: %s" % (k, v) for k, v in headers]
            if body is not None:
                lines.append("Content-Length: %d" % len(body))
            writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
            if body is not None:
                writer.write(body)
            await writer.drain()
            status_line = await asyncio.wait_for(reader.readline(), self.timeout_s)
            parts = status_line.split(None, 2)
            if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
                raise OSError("not an HTTP response")
            resp.status = int(parts[1])
            length, chunked = -1, False
            while True:
                line = await asyncio.wait_for(reader.readline(), self.timeout_s)
                if len(line) > MAX_HEADER_LINE:
                    raise OSError("header line too long")
                line = line.rstrip(b"\r\n")
                if not line:
                    break
                name, _, value = line.partition(b":")
                try:
                    name_s, value_s = name.decode().strip(), value.decode().strip()
                except UnicodeError:
                    continue
                lname = name_s.lower()
                if lname == "content-length" and value_s.isdigit():
                    length = int(value_s)
                elif lname == "transfer-encoding" and "chunked" in value_s.lower():
                    chunked = True
                else:
                    resp.take_header(lname, value_s)
            if not (200 <= resp.status < 300) or sink is None:
                return resp
            await self._body(reader, sink, resp, length, chunked)
        finally:
            writer.close()
            await writer.wait_closed()
        return resp

    async def _body(self, reader, sink, resp, length, chunked):
        async def feed(n):
            while n > 0:
                data = await asyncio.wait_for(reader.read(min(n, 4096)), self.timeout_s)
                if not data:
                    raise OSError("body cut short")
                n -= len(data)
                if not sink(data):
                    resp.error = "aborted"
                    return False
            return True

        if chunked:
            while True:
                size_line = (await asyncio.wait_for(reader.readline(), self.timeout_s)).split(b";")[0].strip()
                size = int(size_line, 16)
                if size == 0:
                    return
                if not await feed(size):
                    return
                await reader.readline()
        elif length >= 0:
            await feed(length)
        else:
            while True:
                data = await asyncio.wait_for(reader.read(4096), self.timeout_s)
                if not data:
                    return
                if not sink(data):
                    resp.error = "aborted"
                    return

    async def get(self, url, headers=(), sink=None, resp=None):
        resp = resp if resp is not None else Response()
        try:
            await self._request("GET", url, list(headers), None, sink, resp)
        except (OSError, ValueError, asyncio.TimeoutError):
            if resp.error is None:
                resp.error = "transport"
        return resp

    async def post(self, url, headers, content_type, body):
        resp = Response()
        try:
            await self._request("POST", url, list(headers) + [("Content-Type", content_type)], body.encode(), None, resp)
        except (OSError, ValueError, asyncio.TimeoutError):
            return 0
        return resp.status


class DevicePort:
    def __init__(self, http, verbose=False):
        self.http = http
        self.verbose = verbose
        self.store = NvsStore()
        self.running = esp32.Partition(esp32.Partition.RUNNING)  # type: ignore[arg-type]  # stub types it as str only
        self.apps = sorted([p for p in esp32.Partition.find(esp32.Partition.TYPE_APP) if p.info()[1] >= 0x10],
                           key=lambda p: p.info()[1])
        found = esp32.Partition.find(esp32.Partition.TYPE_DATA, F.SUBTYPE_DATA_OTA)
        self.otadata = found[0] if found else None
        self._next = None
        self._update = None  # [size, written, erased_to]
        self.min_free = None  # the lowest gc.mem_free() seen since boot
        self.ticks_seen = 0  # ticks_ms counts from boot
        self.uptime_ms = 0

    def log(self, level, tag, message):
        if level == "D" and not self.verbose:
            return
        print("%s (%d) %s: %s" % (level, time.ticks_ms(), tag, message))

    def trusted_time(self):
        now = int(time.time())
        if time.gmtime(0)[0] == 2000:
            now += EPOCH_2000
        return now if now >= TRUSTED_AFTER else 0

    def uptime_us(self):
        return time.ticks_us()

    def health(self):
        """Signal of the access point, MicroPython's heap (gc, not the IDF heap: what this code can
        run out of), time since boot and machine.reset_cause(). MicroPython folds esp_reset_reason()
        into five causes: a panic reads as sw, a brownout as poweron."""
        import network

        wlan = network.WLAN(network.STA_IF)
        rssi = None
        if wlan.isconnected():
            try:
                rssi = int(wlan.status("rssi"))
            except (OSError, ValueError, TypeError):
                rssi = None
        free = gc.mem_free()
        if self.min_free is None or free < self.min_free:
            self.min_free = free
        # ticks_ms wraps (2^30 ms, 12 days on the ESP32): add up the differences between check-ins instead.
        now = time.ticks_ms()
        self.uptime_ms += time.ticks_diff(now, self.ticks_seen)
        self.ticks_seen = now
        cause = RESET_CAUSES.get(machine.reset_cause(), "unknown")
        return Health(rssi=rssi, free_heap=free, min_free_heap=self.min_free, uptime_s=self.uptime_ms // 1000,
                      reset_reason=cause)

    async def network_wait(self, timeout_ms):
        """Until the station has an IP address, at most timeout_ms."""
        import network

        wlan = network.WLAN(network.STA_IF)
        deadline = time.ticks_add(time.ticks_ms(), timeout_ms)
        while not wlan.isconnected():
            if time.ticks_diff(deadline, time.ticks_ms()) <= 0:
                return False
            await asyncio.sleep_ms(100)
        return True

    def random(self):
        import random

        return random.getrandbits(30)

    @staticmethod
    def _reader(part):
        def read(offset, n):
            buf = bytearray(n)
            part.readblocks(offset // BLOCK, buf, offset % BLOCK)
            return bytes(buf)
        return read

    def _state(self, part):
        if self.otadata is None:
            return "undefined"
        read = self._reader(self.otadata)
        entries = [F.Entry(read(0, 32)), F.Entry(read(BLOCK, 32))]
        slot = part.info()[1] - F.SUBTYPE_OTA_0
        return F.state_name(F.slot_state(entries, slot, len(self.apps)))

    def _slot_info(self, part, full=False):
        info = part.info()
        img = F.verify_image(self._reader(part), info[3]) if full else F.app_desc(self._reader(part))
        return SlotInfo(info[4], self._state(part), img.version, img.project, img.secure_version)

    def running_slot(self):
        return self._slot_info(self.running)

    def passive_slot_size(self):
        try:
            return self.running.get_next_update().info()[3]
        except OSError:
            return 0

    def update_begin(self, size, resume_offset):
        if self._update is not None:
            raise PortError("state", "an update is already open")
        if self._state(self.running) == "pending_verify":
            raise PortError("state", "the running image is pending verification")
        try:
            self._next = self.running.get_next_update()
        except OSError:
            raise PortError("not_found", "no passive slot")
        if size > self._next.info()[3] or resume_offset > size:
            raise PortError("too_large")
        self._update = [size, resume_offset, (resume_offset + BLOCK - 1) // BLOCK * BLOCK]

    def update_write(self, data):
        u = self._update
        part = self._next
        if u is None or part is None:
            raise PortError("state")
        if u[1] == 0 and data and data[0] != 0xE9:
            raise PortError("image", "the first byte is not the image magic")
        end = u[1] + len(data)
        if end > part.info()[3]:
            raise PortError("too_large")
        try:
            while u[2] < end:  # sequential writes: erase each 4 KB block as writing enters it
                part.ioctl(6, u[2] // BLOCK)
                u[2] += BLOCK
            part.writeblocks(u[1] // BLOCK, data, u[1] % BLOCK)
        except OSError as e:
            raise PortError("io", str(e))
        u[1] = end

    def update_read(self, offset, n):
        part = self._next if self._next is not None else self.running.get_next_update()
        try:
            return self._reader(part)(offset, n)
        except OSError as e:
            raise PortError("io", str(e))

    def update_abort(self):
        self._update = None

    def update_end(self):
        if self._update is None or self._next is None:
            raise PortError("state")
        self._update = None
        info = self._slot_info(self._next, full=True)
        if not info.version:
            raise PortError("image")
        return info

    def update_activate(self):
        if self._next is None:
            raise PortError("state")
        try:
            self._next.set_boot()  # validates the image again, then otadata: the slot boots next (NEW)
        except OSError as e:
            raise PortError("io", str(e))

    def mark_valid(self):
        esp32.Partition.mark_app_valid_cancel_rollback()

    def mark_invalid_and_reboot(self):
        self.reboot()  # PENDING_VERIFY at reset: the bootloader aborts this slot and boots the previous one

    def reboot(self):
        self.log("I", "otaml_device", "restarting")
        time.sleep_ms(100)
        machine.reset()


def _connect_wifi(ssid, password, timeout_s=30):
    import network

    wlan = network.WLAN(network.STA_IF)
    wlan.active(True)
    if not wlan.isconnected():
        wlan.connect(ssid, password)
        deadline = time.ticks_add(time.ticks_ms(), timeout_s * 1000)
        while not wlan.isconnected() and time.ticks_diff(deadline, time.ticks_ms()) > 0:
            time.sleep_ms(200)
    return wlan.isconnected()


def _sync_time():
    try:
        import ntptime

        ntptime.settime()
    except (OSError, ImportError):
        pass  # no trusted time yet: expiry is judged once the clock is set (manifests/README.md)


async def _main(settings_path):
    import json

    from otaml import agent as agentmod, app, ml, sig

    with open(settings_path) as f:
        cfg = json.load(f)
    _connect_wifi(cfg["wifi_ssid"], cfg["wifi_password"])
    _sync_time()
    with open(cfg.get("ca_file", "/otaml/server_ca.der"), "rb") as f:
        ca = f.read()
    with open(cfg.get("manifest_key_file", "/otaml/manifest_pub.pem"), "rb") as f:
        manifest_key = f.read()
    with open(cfg.get("config_key_file", "/otaml/config_pub.pem"), "rb") as f:
        config_key = f.read()
    port = DevicePort(Http(ca, cfg.get("allow_plain_http", False)), cfg.get("verbose", False))
    runner = app.MLRunner(port, None, lambda: None, cfg.get("ml_interval_ms", 1000))
    try:
        import otaml_model  # frozen by the board manifest: MODEL, CARD, SAMPLES (bytes)

        model = ml.ML(port, otaml_model.CARD, otaml_model.MODEL)
        runner.ml = model
        runner.sensor = ml.Replay(otaml_model.SAMPLES.decode(), model.card.n_features)
    except ImportError:
        port.log("I", "otaml_device", "no model frozen into this build: ML task not started")

    async def selftest():
        if runner.ml is not None:
            return runner.ml.health_check()
        return True, "ok (no model in this build)"

    settings = agentmod.Settings(
        cfg["server"], cfg.get("channel", "stable"), cfg["device_id"], cfg["token"], cfg.get("project", "micropython"),
        cfg.get("chip", "esp32"), sig.Keyring([manifest_key]), sig.Keyring([config_key]), selftest=selftest,
        config_apply=runner.apply_config, checkin_extra=(runner.ml.checkin_headers if runner.ml is not None else None),
        min_poll_interval_s=cfg.get("min_poll_interval_s", 10), confirm_window_s=cfg.get("confirm_window_s", 300),
        confirm_backoff_min_ms=cfg.get("confirm_backoff_min_ms", 1000),
        confirm_backoff_max_ms=cfg.get("confirm_backoff_max_ms", 30000),
        unreachable_retakes=cfg.get("unreachable_retakes", 3), progress_min_bytes=cfg.get("progress_min_bytes", 262144))
    await app.run(port, settings, runner)


def main(settings_path="/otaml/settings.json"):
    """Entry point for main.py on the device: `import otaml.device; otaml.device.main()`."""
    asyncio.run(_main(settings_path))
