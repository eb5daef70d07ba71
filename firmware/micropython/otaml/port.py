"""The narrow seams between the portable package and a platform (the C core's otaml_port.h).

An adapter (otaml.device on an ESP32, otaml.host in the WebAssembly MicroPython) provides:

  log(level, tag, message)           level one of "E", "W", "I", "D"
  trusted_time() -> int              Unix seconds when the clock is trusted (SNTP), else 0
  uptime_us() -> int
  health() -> Health                 device health for the check-in (signal, heap, uptime, last reset)
  random() -> int                    poll jitter, not cryptography
  store: Store                       get_str/get_u64/set_str/set_u64/erase (NVS namespace "otaml")
  http: Http                         async get(url, headers, sink) -> Response; async post(...) -> status
  running_slot() -> SlotInfo
  passive_slot_size() -> int         0 when there is no second slot
  update_begin(size, resume_offset)  the update_* calls raise PortError naming a status
  update_write(data)
  update_read(offset, n) -> bytes
  update_abort()
  update_end() -> SlotInfo           validates the written image as the bootloader will
  update_activate()                  the validated slot boots next (state NEW)
  mark_valid()
  mark_invalid_and_reboot()          does not return
  reboot()                           does not return
"""


class PortError(Exception):
    """A port call failed; .status is "state", "too_large", "image", "io" or "not_found"."""

    def __init__(self, status, detail=""):
        super().__init__("%s%s" % (status, ": " + detail if detail else ""))
        self.status = status


class SlotInfo:
    def __init__(self, label="", state="undefined", version="", project="", secure_version=0):
        self.label = label
        self.state = state
        self.version = version
        self.project = project
        self.secure_version = secure_version


class Health:
    """otaml_health_t: None or 0 where the platform cannot tell (a header is then left out)."""

    def __init__(self, rssi=None, free_heap=0, min_free_heap=0, uptime_s=0, reset_reason="unknown"):
        self.rssi = rssi  # dBm, or None when not associated
        self.free_heap = free_heap
        self.min_free_heap = min_free_heap
        self.uptime_s = uptime_s
        self.reset_reason = reset_reason  # a name of protocol.RESET_REASONS


class Response:
    """A response's status and the headers the protocol reads. error: None, "transport" (no response,
    or the body was cut short) or "aborted" (the sink stopped the transfer)."""

    def __init__(self):
        self.status = 0
        self.error: str | None = None
        self.etag = ""
        self.signature = ""
        self.poll_interval = 0
        self.config = ""
        self.config_signature = ""

    def take_header(self, name, value):
        name = name.lower()
        if name == "etag":
            self.etag = value if len(value) < 80 else ""
        elif name == "x-otaml-signature":
            self.signature = value if len(value) < 128 else ""
        elif name == "x-otaml-poll-interval":
            self.poll_interval = int(value) if value.isdigit() and len(value) <= 9 else 0
        elif name == "x-otaml-config":  # too long means not ours to parse: empty rather than truncated
            self.config = value if len(value) <= 700 else ""
        elif name == "x-otaml-config-signature":
            self.config_signature = value if len(value) <= 128 else ""


class BufferSink:
    """Collects a body up to cap bytes; more sets overflow and stops the transfer."""

    def __init__(self, cap):
        self.cap = cap
        self.buf = bytearray()
        self.overflow = False

    def __call__(self, data):
        if len(data) > self.cap - len(self.buf):
            self.overflow = True
            return False
        self.buf.extend(data)
        return True
