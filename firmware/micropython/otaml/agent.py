"""The OTA agent: the rollback gate at boot and the poll cycle (check in, verify, download, install),
the C core's otaml_agent.c in asyncio. It runs in the OTA task and never waits on the ML task.

Persistent state (the port's store, NVS namespace "otaml"), with the C firmware's keys:
  mf_ver      manifest_version the running image was installed from (replay rule)
  mf_prev     mf_ver before the install in flight: restored if that install rolls back
  cfg_rev, cfg  desired-config revision applied and its properties ("name=value,...")
  failed_ver  version that last rolled back here (never taken again by this device)
  inst_ver    version installed and not yet confirmed; inst_why, inst_det: why it is being rolled back
              (set by the gate just before it rolls back); inst_ur: ur_count of that version when it
              was installed (makes counting a rollback idempotent)
  ur_ver, ur_count  the version whose server_unreachable rollbacks are being counted, and how many so
              far: at most unreachable_retakes of them are forgiven (failed_ver stays unset)
  dl_sha, dl_off  the download in progress (image sha256, bytes safely written) for resumption
  ob_kind, ob_ver, ob_why, ob_det  one pending event that must survive a reboot (rolled_back)
The order of writes makes an update safe to interrupt anywhere: dl_off is saved only after its bytes
are in flash; mf_ver, inst_ur and inst_ver are saved before the boot slot switches. The rollback
gate at boot is otaml.gate.
"""

import json

from otaml import config as cfgdoc
from otaml import install, policy, protocol as P
from otaml.port import BufferSink

TAG = "otaml_ota"


class Settings:
    """What the application tells the agent (otaml_agent_config_t)."""

    def __init__(self, server_url, channel, device_id, token, project, chip, keyring, config_keyring=None,
                 selftest=None, config_apply=None, checkin_extra=None, default_poll_interval_s=60,
                 min_poll_interval_s=1, confirm_window_s=300, confirm_backoff_min_ms=1000,
                 confirm_backoff_max_ms=30000, unreachable_retakes=3, progress_min_bytes=262144):
        self.server_url = server_url.rstrip("/")
        self.channel = channel
        self.device_id = device_id
        self.token = token
        self.project = project
        self.chip = chip
        self.keyring = keyring
        self.config_keyring = config_keyring  # None disables desired configuration
        self.selftest = selftest  # async () -> (ok, detail); None: reachability only
        self.config_apply = config_apply  # (Config) -> bool
        self.checkin_extra = checkin_extra  # () -> [(name, value)]
        self.default_poll_interval_s = default_poll_interval_s
        self.min_poll_interval_s = min_poll_interval_s
        # The rollback gate (manifests/README.md, "Rollback"): how long a new image keeps looking for
        # the server before it rolls back as server_unreachable (0: one attempt), the retry delays
        # (doubling from min to max, with jitter), and how many such rollbacks of one version are forgiven.
        self.confirm_window_s = confirm_window_s
        self.confirm_backoff_min_ms = confirm_backoff_min_ms
        self.confirm_backoff_max_ms = confirm_backoff_max_ms
        self.unreachable_retakes = unreachable_retakes
        # Images of at least this many bytes report download_progress at DOWNLOAD_PROGRESS_PCT (0: never).
        self.progress_min_bytes = progress_min_bytes


class Agent:
    def __init__(self, port, settings):
        self.port = port
        self.s = settings
        self.manifest_url = "%s/channels/%s/firmware.json" % (settings.server_url, settings.channel)
        self.events_url = "%s/api/devices/%s/events" % (settings.server_url, settings.device_id)
        self.etag = ""  # of the last manifest fully acted on: its poll may be a 304
        self.rejected_etag = None  # a refusal is reported once per manifest, not every poll
        self.poll_interval_s = settings.default_poll_interval_s or 60
        st = port.store
        self.installed_manifest_version = st.get_u64("mf_ver") or 0
        self.failed_version = st.get_str("failed_ver") or ""
        self.outbox_pending = st.get_str("ob_kind") is not None
        self.config = cfgdoc.Config()
        self._config_load()
        self.running = port.running_slot()

    def log(self, level, msg):
        self.port.log(level, TAG, msg)

    # ---- events ----

    async def post_event(self, kind, version, reason=P.OK, detail=""):
        """"ok" when the server took it; "transport" when nothing answered, or a 5xx or 429 did (try
        later: a proxy before a restarting server); "refused" for any other answer."""
        body = {"kind": kind, "reason": reason, "detail": (detail or "")[:255]}
        if version:
            body["version"] = version
        status = await self.port.http.post(self.events_url, [("Authorization", "Bearer " + self.s.token)],
                                           "application/json", json.dumps(body))
        if 200 <= status < 300:
            self.log("I", "event %s %s reason=%s%s" % (kind, version or "", reason, " detail=" + detail if detail else ""))
            return "ok"
        result = "transport" if status == 0 or status >= 500 or status == 429 else "refused"
        self.log("W", "event %s not delivered: %s (HTTP %d)" % (kind, result, status))
        return result

    def outbox_put(self, kind, version, reason, detail):
        st = self.port.store
        self.outbox_pending = True
        st.set_str("ob_ver", version)
        st.set_str("ob_why", reason)
        st.set_str("ob_det", detail or "")
        st.set_str("ob_kind", kind)  # written last: marks it complete

    async def outbox_flush(self):
        """Send the queued event, if any: "ok" (sent, or nothing queued), else as post_event."""
        if not self.outbox_pending:
            return "ok"
        st = self.port.store
        kind = st.get_str("ob_kind")
        if kind is None:
            self.outbox_pending = False
            return "ok"
        if kind not in P.EVENTS:
            kind = P.ROLLED_BACK
        why = st.get_str("ob_why") or P.OK
        result = await self.post_event(kind, st.get_str("ob_ver") or "", why if why in P.REASONS else P.OK,
                                       st.get_str("ob_det") or "")
        if result == "ok":
            st.erase("ob_kind")
            self.outbox_pending = False
        return result

    # ---- desired configuration ----

    def _config_load(self):
        if self.s.config_keyring is None:
            return
        st = self.port.store
        loaded = cfgdoc.Config.from_applied(st.get_u64("cfg_rev") or 0, st.get_str("cfg") or "")
        if loaded is None:
            self.log("W", "stored configuration unreadable: running defaults until the server sends one")
            loaded = cfgdoc.Config()
        self.config = loaded
        if loaded.revision > 0 and self.s.config_apply is not None:
            self.s.config_apply(loaded)

    def config_take(self, resp):
        """A document rides on any poll answer. Refusals are logged, not reported as events: the server
        sees the old revision in the next check-in and keeps offering."""
        if self.s.config_keyring is None or not resp.config:
            return
        status, nxt = cfgdoc.verify(self.s.config_keyring, resp.config, resp.config_signature, self.s.device_id,
                                    self.config.revision)
        if nxt is None:
            self.log("W", "config document refused: %s" % status)
            return
        if self.s.config_apply is not None and not self.s.config_apply(nxt):
            self.log("W", "config revision %d not applied by the application" % nxt.revision)
            return
        st = self.port.store
        try:
            st.set_str("cfg", nxt.applied())
            st.set_u64("cfg_rev", nxt.revision)
        except OSError:
            self.log("E", "cannot persist config revision %d" % nxt.revision)
            return
        self.config = nxt
        self.log("I", "config revision %d applied: %s" % (nxt.revision, nxt.applied() or "(defaults)"))

    # ---- check-in ----

    def checkin_headers(self, with_etag):
        r = self.running
        h = [(P.H_DEVICE_ID, self.s.device_id), ("Authorization", "Bearer " + self.s.token),
             (P.H_VERSION, r.version), (P.H_PARTITION, r.label), (P.H_OTA_STATE, r.state),
             (P.H_MANIFEST_VERSION, str(self.installed_manifest_version)),
             (P.H_SECURE_VERSION, str(r.secure_version))]
        if with_etag and self.etag:
            h.append(("If-None-Match", self.etag))
        if self.s.config_keyring is not None:
            h.append((P.H_CONFIG_REVISION, str(self.config.revision)))
            if self.config.applied():
                h.append((P.H_CONFIG_APPLIED, self.config.applied()))
        health = self.port.health()
        if health.rssi is not None:
            h.append((P.H_RSSI, str(health.rssi)))
        if health.free_heap > 0:
            h.append((P.H_FREE_HEAP, str(health.free_heap)))
        if health.min_free_heap > 0:
            h.append((P.H_MIN_FREE_HEAP, str(health.min_free_heap)))
        h.append((P.H_UPTIME_S, str(health.uptime_s)))
        h.append((P.H_RESET_REASON, health.reset_reason))
        if self.s.checkin_extra is not None:
            h.extend(self.s.checkin_extra())
        return h

    async def manifest_signature(self, resp):
        """The response's X-Otaml-Signature, else firmware.json.sig beside the manifest (a static host,
        which cannot set headers); "" when neither is there."""
        if resp.signature:
            return resp.signature
        sb = BufferSink(P.MAX_SIGNATURE_B64 + 2)
        sresp = await self.port.http.get(self.manifest_url + ".sig", [], sb)
        if sresp.error is None and sresp.status == 200 and sb.buf:
            try:
                return bytes(sb.buf).rstrip(b"\r\n").decode()
            except UnicodeError:
                return ""
        return ""

    async def boot(self):
        """The rollback gate (otaml.gate)."""
        from otaml import gate

        await gate.boot(self)

    # ---- the poll ----

    async def reject(self, semver, reason, detail=""):
        self.log("W", "refused %s: %s%s" % (semver or "manifest", reason, ": " + detail if detail else ""))
        await self.post_event(P.REJECTED, semver, reason, detail)
        return "rejected"

    async def poll(self):
        """One poll: check in, act on the manifest. Returns "idle", "rejected", "retry" or "unreachable";
        after an install the port reboots instead."""
        await self.outbox_flush()
        body = BufferSink(P.MAX_MANIFEST_BYTES)
        resp = await self.port.http.get(self.manifest_url, self.checkin_headers(True), body)
        if resp.error is None or body.overflow:
            self.config_take(resp)
        if resp.poll_interval > 0:
            self.poll_interval_s = max(resp.poll_interval, self.s.min_poll_interval_s)
        if body.overflow:
            if self.rejected_etag != resp.etag or not resp.etag:
                self.rejected_etag = resp.etag
                return await self.reject("", P.MANIFEST_TOO_LARGE)
            return "idle"
        if resp.error is not None:
            self.log("W", "poll failed: network transport error")
            return "unreachable"
        if resp.status != 200:
            if resp.status == 401:
                self.log("E", "server refused device %s: check its id and token" % self.s.device_id)
            elif resp.status not in (304, 404):
                self.log("W", "poll answered HTTP %d" % resp.status)
            return "idle"
        signature = await self.manifest_signature(resp)
        ctx = policy.Context(self.port.trusted_time(), self.running.version, self.s.project, self.s.chip,
                             self.s.channel, self.running.secure_version, self.installed_manifest_version,
                             self.failed_version, self.port.passive_slot_size())
        decision, reason, m = policy.evaluate(self.s.keyring, bytes(body.buf), signature, ctx)
        if decision == P.NO_UPDATE:
            self.etag = resp.etag
            return "idle"
        if decision == P.REJECT:
            self.etag = resp.etag
            if self.rejected_etag != resp.etag or not resp.etag:
                self.rejected_etag = resp.etag
                return await self.reject(m.semver if m else "", reason)
            return "idle"
        if m is None:  # an update decision always carries its manifest
            return "idle"
        queued = await self.outbox_flush()
        if queued == "transport":
            # The server hears a rollback before the same version's retake starts. A server that
            # answers and refuses the event (4xx: a static host) never blocks updates.
            self.log("W", "update to %s waits until the server takes the queued event" % m.semver)
            return "retry"
        self.log("I", "update offered: %s -> %s (manifest #%d)" % (self.running.version, m.semver, m.manifest_version))
        self.etag = ""  # until it is installed, keep fetching the manifest in full
        outcome = await install.install(self, m)
        if outcome == "rejected":
            self.etag = resp.etag
        return outcome

    def next_delay_ms(self):
        """The server's interval with up to 10 % jitter."""
        base = self.poll_interval_s * 1000
        jitter = base // 10
        return base - jitter // 2 + (self.port.random() % (jitter + 1) if jitter else 0)
