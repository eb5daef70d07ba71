"""The rollback gate: the first boot of a new image decides whether it stays (manifests/README.md,
"Rollback"), as the C core's otaml_gate.c decides it. In order:
  1. the self-test, which needs no network: a failure rolls back at once (self_test_failed);
  2. the server: wait for an IP address, then ask, with exponential backoff and jitter, until it
     answers or the confirmation window closes. An answer confirms the image. The otaml server
     refusing this image's check-in (400, 401) rolls back at once (self_test_failed): an image that
     cannot check in could never be updated again. No answer rolls back as server_unreachable, which
     the previous image forgives up to unreachable_retakes times per version.

Persistent writes, each safe against a power cut right after it:
  rolling back: inst_det, then inst_why (the verdict), then the reset. A reset before the verdict
    leaves the image pending: the bootloader rolls it back and the previous image reads
    reset_while_pending (it cannot tell a power cut from a crash: a crash-looping build is never retaken).
  settling it in the previous image: ur_ver/ur_count (n = inst_ur + 1, an assignment, so a repeat
    counts the same), failed_ver, mf_ver, the outbox; inst_ver is erased only after all of them.
  confirming: the slot is marked valid first, then inst_* and ur_* are erased.
"""

import asyncio

from otaml import protocol as P
from otaml.port import BufferSink, Response

TAG = "otaml_gate"
DETAIL_MAX = 159  # a detail as it is stored (inst_det, ob_det) and reported
NO_ANSWER = 0
ANSWERED = 1
REFUSED = 2


def unreachable_count(store, version):
    """server_unreachable rollbacks of version counted so far (0 for another version)."""
    if store.get_str("ur_ver") != version:
        return 0
    return store.get_u64("ur_count") or 0


def _forget_install_record(store):
    store.erase("inst_ver")  # first: without it the rest is never read
    store.erase("inst_why")
    store.erase("inst_det")
    store.erase("inst_ur")


async def _ask_server(agent):
    """One attempt: (answer, why). Only the otaml server's own answers are judged: it marks every
    poll answer with X-Otaml-Poll-Interval, which a proxy's 502/503/504 or a captive portal's page does
    not carry. A static host cannot set headers, so there an unmarked 200 counts only when its body is
    a manifest signed with a pinned key. Everything else is no answer: the gate asks again."""
    body = BufferSink(P.MAX_MANIFEST_BYTES)
    resp = Response()
    await agent.port.http.get(agent.manifest_url, agent.checkin_headers(False), body, resp)
    from_server = resp.poll_interval > 0
    s = resp.status
    if resp.error is not None and not body.overflow:
        return NO_ANSWER, "network transport error"
    if from_server and s in (400, 401):
        return REFUSED, "the server refused this image's check-in: HTTP %d (%s)" % (
            s, "device id or token" if s == 401 else "malformed check-in")
    if from_server and (200 <= s < 300 or s in (304, 404)):
        return ANSWERED, "HTTP %d" % s
    if from_server:
        return NO_ANSWER, "HTTP %d from the server" % s  # 5xx, 429: the server's trouble, not the image's
    if s == 200 and not body.overflow:
        signature = await agent.manifest_signature(resp)
        if signature and agent.s.keyring.verify(bytes(body.buf), signature, P.MAX_SIGNATURE_B64) is not None:
            return ANSWERED, "a signed manifest from a static host"
    return NO_ANSWER, "HTTP %d without %s" % (s, P.H_POLL_INTERVAL)


async def _wait_for_server(agent):
    """Until the server answers or the window closes: (answer, detail)."""
    s = agent.s
    port = agent.port
    window_ms = s.confirm_window_s * 1000
    min_ms = max(s.confirm_backoff_min_ms, 1)
    max_ms = max(s.confirm_backoff_max_ms, min_ms)
    delay_ms = min_ms
    start = port.uptime_us()

    def left():
        elapsed = (port.uptime_us() - start) // 1000
        return max(0, window_ms - elapsed)

    attempts = 0
    why = ""
    while True:
        if not await port.network_wait(left()):
            why = "no IP address"  # nothing asked: not an attempt
        else:
            attempts += 1
            answer, why = await _ask_server(agent)
            if answer != NO_ANSWER:
                agent.log("I", "server answered (%s) at attempt %d, %d ms into the window"
                          % (why, attempts, window_ms - left()))
                return answer, why
        remaining = left()
        if remaining == 0:
            break
        # Equal jitter: a fleet rebooting together after an outage does not return in lockstep.
        pause = min(delay_ms // 2 + port.random() % (delay_ms // 2 + 1), remaining)
        agent.log("W", "no answer from the server (%s): asking again in %d ms, %d ms of the window left"
                  % (why, pause, remaining))
        await asyncio.sleep_ms(pause)
        delay_ms = max_ms if delay_ms > max_ms // 2 else delay_ms * 2
    return NO_ANSWER, "no answer from the server within %d s (%d attempt%s; last: %s)" % (
        s.confirm_window_s, attempts, "" if attempts == 1 else "s", why)


def _roll_back(agent, reason, detail):
    st = agent.port.store
    st.set_str("inst_det", detail[:DETAIL_MAX])
    st.set_str("inst_why", reason)  # the verdict, written last
    agent.port.mark_invalid_and_reboot()


async def _gate(agent):
    r = agent.running
    st = agent.port.store
    booted_sent = await agent.post_event(P.BOOTED, r.version, P.OK, r.label) == "ok"
    selftest = ""
    if agent.s.selftest is not None:
        ok, selftest = await agent.s.selftest()
        if not ok:
            agent.log("E", "self-test of %s failed (%s): rolling back" % (r.version, selftest))
            _roll_back(agent, P.SELF_TEST_FAILED, selftest)
            return
    agent.log("I", "self-test of %s passed (%s); asking the server for up to %d s"
              % (r.version, selftest, agent.s.confirm_window_s))
    answer, detail = await _wait_for_server(agent)
    if answer == REFUSED:
        agent.log("E", "%s: rolling back %s" % (detail, r.version))
        _roll_back(agent, P.SELF_TEST_FAILED, detail)
        return
    if answer == NO_ANSWER:
        agent.log("E", "%s: rolling back %s" % (detail, r.version))
        _roll_back(agent, P.SERVER_UNREACHABLE, detail)
        return
    agent.port.mark_valid()
    r.state = P.IMG_VALID
    _forget_install_record(st)
    if unreachable_count(st, r.version) > 0:
        st.erase("ur_ver")
        st.erase("ur_count")
    agent.log("I", "%s confirmed: rollback cancelled" % r.version)
    if not booted_sent:
        await agent.post_event(P.BOOTED, r.version, P.OK, r.label)
    await agent.post_event(P.CONFIRMED, r.version, P.OK, selftest)


def _settle_install(agent):
    """In the previous image, after the bootloader returned to it: what became of the install."""
    r = agent.running
    st = agent.port.store
    installed = st.get_str("inst_ver")
    if installed is None:
        return
    if installed != r.version:
        why = st.get_str("inst_why") or P.RESET_WHILE_PENDING
        reason = why if why in P.REASONS else P.RESET_WHILE_PENDING
        detail = st.get_str("inst_det") or ""
        retake = False
        if reason == P.SERVER_UNREACHABLE:
            n = (st.get_u64("inst_ur") or 0) + 1
            retakes = agent.s.unreachable_retakes
            retake = n <= retakes
            st.set_u64("ur_count", n)
            st.set_str("ur_ver", installed)
            detail += ("; retake %d of %d" % (n, retakes)) if retake else ("; no retake left (%d allowed)" % retakes)
        if retake:
            agent.log("W", "%s did not stick (%s): running %s again; it will be taken again" % (installed, reason, r.version))
        else:
            agent.log("W", "%s did not stick (%s): running %s again; it will not be retried" % (installed, reason, r.version))
            st.set_str("failed_ver", installed)
            agent.failed_version = installed
        prev = st.get_u64("mf_prev")
        if prev is not None:  # the running image came from the manifest before: accept it again
            st.set_u64("mf_ver", prev)
            agent.installed_manifest_version = prev
        agent.outbox_put(P.ROLLED_BACK, installed, reason, detail[:DETAIL_MAX])
    _forget_install_record(st)


async def boot(agent):
    r = agent.running
    agent.log("I", "running %s %s from %s (%s)" % (r.project, r.version, r.label, r.state))
    if r.state == P.IMG_PENDING_VERIFY:
        await _gate(agent)
        return
    _settle_install(agent)
    await agent.outbox_flush()
