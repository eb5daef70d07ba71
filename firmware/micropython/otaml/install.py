"""Download and install (the C core's prv_install): stream the image into the passive slot with a
running SHA-256 and a hard stop at the declared size, save progress as it goes so a cut connection or
a power loss resumes with Range, and switch the boot slot only after hash, size and the image's own
validation and app description all match.
"""

from otaml import download, gate, protocol as P
from otaml.port import PortError, Response

PERSIST_EVERY_BYTES = 64 * 1024  # dl_off writes: bounded flash wear, bounded re-download
READBACK_CHUNK = 4096


class _ImageSink:
    def __init__(self, port, guard, resume_offset):
        self.port = port
        self.guard = guard
        self.resume_offset = resume_offset  # where this request's body starts (Range); 0: the whole image
        self.stop_at = 0  # a progress milestone: stop once this many bytes are in flash (0: none)
        self.milestone = False
        self.since_persist = 0
        self.resp: Response | None = None
        self.started = False
        self.oversize = False
        self.flash_error = None

    def __call__(self, data):
        port = self.port
        if not self.started:
            self.started = True
            if self.resume_offset > 0 and self.resp is not None and self.resp.status == 200:
                # The server ignored Range (a static host without it): start over from byte 0, in one
                # transfer (progress milestones need Range, so there are none from here on).
                port.log("W", "otaml_ota", "server sent the whole image instead of a range: restarting the download")
                self.stop_at = 0
                size = self.guard.expected_size
                port.update_abort()
                try:
                    port.update_begin(size, 0)
                except PortError as e:
                    self.flash_error = e.status
                    return False
                self.guard = download.Guard(size)
                self.resume_offset = 0
        try:
            self.guard.feed(data)
        except download.SizeError:
            self.oversize = True  # the endless-data attack stops here: not a byte past the declared size
            return False
        try:
            port.update_write(data)
        except PortError as e:
            self.flash_error = e.status
            return False
        self.since_persist += len(data)
        if self.since_persist >= PERSIST_EVERY_BYTES:
            self.since_persist = 0
            port.store.set_u64("dl_off", self.guard.received)
        if self.stop_at and self.stop_at <= self.guard.received < self.guard.expected_size:
            self.milestone = True  # the bytes are in flash; the next request resumes after them
            return False
        return True


def _next_milestone(received, size, step):
    """Index of the first progress fraction above received (len when none)."""
    pct = P.DOWNLOAD_PROGRESS_PCT
    while step < len(pct) and received >= size * pct[step] // 100:
        step += 1
    return step


def _milestone_bytes(step, size):
    pct = P.DOWNLOAD_PROGRESS_PCT
    return size * pct[step] // 100 if step < len(pct) else 0


def _forget_download(store):
    store.erase("dl_sha")
    store.erase("dl_off")


def _prepare_resume(port, guard, sha_hex, size):
    """Re-hash what a previous attempt wrote, so the final digest covers the whole image."""
    st = port.store
    if st.get_str("dl_sha") != sha_hex:
        return 0
    offset = st.get_u64("dl_off") or 0
    if offset <= 0 or offset >= size:
        return 0
    done = 0
    try:
        while done < offset:
            n = min(READBACK_CHUNK, offset - done)
            guard.feed(port.update_read(done, n))
            done += n
    except (PortError, download.SizeError, OSError):
        return -1
    return offset


async def install(agent, m):
    """Returns "rejected" or "retry"; after a successful install the port reboots."""
    port = agent.port
    st = port.store
    sha_hex = m.sha256.hex()
    guard = download.Guard(m.size)
    resume = _prepare_resume(port, guard, sha_hex, m.size)
    if resume < 0:
        guard = download.Guard(m.size)
        resume = 0
    try:
        port.update_begin(m.size, resume)
    except PortError as e:
        return await agent.reject(m.semver, P.FLASH_ERROR, "update_begin: %s" % e.status)
    detail = ""
    if resume == 0:
        st.set_str("dl_sha", sha_hex)
        st.set_u64("dl_off", 0)
        agent.log("I", "downloading %s (%d bytes) into the passive slot" % (m.semver, m.size))
    else:
        detail = "resuming at %d of %d" % (resume, m.size)
        agent.log("I", "downloading %s: %s" % (m.semver, detail))
    await agent.post_event(P.DOWNLOAD_STARTED, m.semver, P.OK, detail)

    # An image of at least progress_min_bytes reports download_progress at fixed fractions: the transfer
    # stops at each one, the event goes out, and the next request resumes with Range.
    report = agent.s.progress_min_bytes > 0 and m.size >= agent.s.progress_min_bytes
    step = _next_milestone(guard.received, m.size, 0)
    sink = _ImageSink(port, guard, resume)
    sink.stop_at = _milestone_bytes(step, m.size) if report else 0
    while True:
        sink.resume_offset = sink.guard.received
        sink.started = sink.milestone = False
        headers = [("Range", "bytes=%d-" % sink.resume_offset)] if sink.resume_offset > 0 else []
        sink.resp = Response()  # filled before the first byte reaches the sink, which reads its status
        resp = await port.http.get(m.file, headers, sink, sink.resp)
        if not sink.milestone or sink.oversize or sink.flash_error is not None:
            break
        st.set_u64("dl_off", sink.guard.received)
        await agent.post_event(P.DOWNLOAD_PROGRESS, m.semver, P.OK, "%d%% (%d of %d bytes)"
                               % (P.DOWNLOAD_PROGRESS_PCT[step], sink.guard.received, m.size))
        step = _next_milestone(sink.guard.received, m.size, step + 1)
        sink.stop_at = _milestone_bytes(step, m.size)
    guard = sink.guard

    if sink.oversize:
        port.update_abort()
        _forget_download(st)
        return await agent.reject(m.semver, P.SIZE_MISMATCH, "server sent more than the declared %d bytes" % m.size)
    if sink.flash_error is not None:
        port.update_abort()
        _forget_download(st)
        reason = P.IMAGE_INVALID if sink.flash_error == "image" else P.FLASH_ERROR
        return await agent.reject(m.semver, reason, "writing the passive slot: %s" % sink.flash_error)
    wanted = resp.status == 200 or (resp.status == 206 and sink.resume_offset > 0)
    if resp.error is not None or not wanted or guard.received < m.size:
        # Keep what is in flash: the next poll resumes from here.
        st.set_u64("dl_off", guard.received)
        port.update_abort()
        detail = "%s, HTTP %d, %d of %d bytes" % (resp.error or "ok", resp.status, guard.received, m.size)
        agent.log("W", "download of %s interrupted: %s" % (m.semver, detail))
        await agent.post_event(P.DOWNLOAD_FAILED, m.semver, P.DOWNLOAD_ERROR, detail)
        return "retry"
    if guard.finish(m.sha256) != "ok":
        port.update_abort()
        _forget_download(st)
        return await agent.reject(m.semver, P.HASH_MISMATCH, "sha256 of the downloaded image differs from the manifest")
    try:
        written = port.update_end()
    except PortError as e:
        _forget_download(st)
        return await agent.reject(m.semver, P.IMAGE_INVALID, "image validation: %s" % e.status)
    _forget_download(st)
    if written.version != m.semver or written.project != agent.s.project:
        return await agent.reject(m.semver, P.IMAGE_INVALID, "image says %s %s, manifest says %s %s"
                                  % (written.project, written.version, agent.s.project, m.semver))
    await agent.post_event(P.VERIFIED, m.semver, P.OK, "")
    # inst_ver goes last: it makes the record count. A stale inst_why from an interrupted earlier
    # record would otherwise be read as this install's verdict.
    st.erase("inst_why")
    st.erase("inst_det")
    try:
        st.set_u64("mf_prev", agent.installed_manifest_version)
        st.set_u64("mf_ver", m.manifest_version)
        st.set_u64("inst_ur", gate.unreachable_count(st, m.semver))
        st.set_str("inst_ver", m.semver)
    except OSError:
        return await agent.reject(m.semver, P.FLASH_ERROR, "cannot persist the install record")
    agent.installed_manifest_version = m.manifest_version
    try:
        port.update_activate()
    except PortError as e:
        st.erase("inst_ver")
        return await agent.reject(m.semver, P.FLASH_ERROR, "set boot partition: %s" % e.status)
    await agent.post_event(P.INSTALLED, m.semver, P.OK, "")
    agent.log("I", "%s installed; rebooting into it" % m.semver)
    port.reboot()
    return "rebooting"
