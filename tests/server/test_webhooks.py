"""Webhooks against a real HTTP receiver started by the test: signed posts (HMAC-SHA256 of the body)
when a rollout halts or finishes and when a manifest is about to expire, retried with growing delays,
given up after the last attempt, each event owed once, and the delivery status in the API and CLI."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.utils.devices import HttpDevice
from tests.utils.processes import Cli, ServerProcess
from tests.utils.waiting import wait_for

pytestmark = pytest.mark.e2e


class Receiver:
    """A local HTTP endpoint that records every post and answers 500 to the first ``fail_first``."""

    def __init__(self, fail_first: int = 0, always_fail: bool = False):
        self.posts: list[tuple[float, dict[str, str], bytes]] = []
        self.fail_first = fail_first
        self.always_fail = always_fail
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                receiver.posts.append((time.monotonic(), {k.lower(): v for k, v in self.headers.items()}, body))
                failing = receiver.always_fail or len(receiver.posts) <= receiver.fail_first
                self.send_response(500 if failing else 204)
                self.end_headers()

            def log_message(self, *args):  # quiet
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/otaml"

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def fast_server(tmp_path, database_url):
    srv = ServerProcess(tmp_path / "data", database_url=database_url, env_extra={
        "OTAML_WEBHOOK_BACKOFF": "0.4", "OTAML_WEBHOOK_MAX_ATTEMPTS": "3", "OTAML_HOUSEKEEPING_INTERVAL": "0.3"}).start()
    yield srv
    srv.stop()


def deliveries(server) -> list[dict]:  # type: ignore[no-untyped-def]
    with server.admin() as admin:
        return admin.get("/api/webhooks/deliveries", params={"limit": 100}).json()["data"]


def halt_a_rollout(server, cli, make_image, channel: str = "stable") -> int:  # type: ignore[no-untyped-def]
    assert cli("publish", "1.1", str(make_image("1.1")), "--channel", channel).returncode == 0
    assert cli("publish", "1.2", str(make_image("1.2")), "--channel", channel, "--staged").returncode == 0
    devices = [HttpDevice.enroll(server, f"{channel}-{i:02d}", channel=channel) for i in range(10)]
    for d in devices:
        d.poll()
    started = cli("rollout", "start", "1.2", "--channel", channel, "--rings", "100", "--success-pct", "10", "--json")
    rollout_id = json.loads(started.stdout)["id"]
    for d in devices[:3]:
        assert d.offered() == "1.2"
        d.fail("1.2")
    return rollout_id


def test_a_halt_is_posted_signed_and_retried_until_taken(fast_server, tmp_path, signing_key_path, make_image):
    server, cli = fast_server, Cli(fast_server, signing_key_path, tmp_path)
    with Receiver(fail_first=2) as receiver:
        added = cli("webhook", "add", receiver.url, "--event", "rollout.halted", "--json")
        assert added.returncode == 0, added.stderr
        secret = json.loads(added.stdout)["secret"]
        rollout_id = halt_a_rollout(server, cli, make_image)
        wait_for(lambda: len(receiver.posts) == 3, 20, "three attempts (two answered 500)")
        done = wait_for(lambda: d if (d := deliveries(server)) and d[0]["state"] == "delivered" else None, what="delivered")
    assert done[0]["attempts"] == 3 and done[0]["last_status"] == 204 and done[0]["event"] == "rollout.halted"
    (t1, h1, b1), (t2, h2, b2), (t3, h3, b3) = receiver.posts
    assert b1 == b2 == b3 and h1["x-otaml-delivery"] == h3["x-otaml-delivery"]  # the same event, retried
    assert t2 - t1 >= 0.4 and t3 - t2 >= 0.8  # backoff 0.4 s, doubling
    assert h3["content-type"] == "application/json" and h3["x-otaml-event"] == "rollout.halted"
    assert h3["x-otaml-signature-256"] == "sha256=" + hmac.new(secret.encode(), b3, hashlib.sha256).hexdigest()
    body = json.loads(b3)
    assert body["event"] == "rollout.halted" and body["id"] == h3["x-otaml-delivery"]
    assert body["data"]["rollout"]["id"] == rollout_id and body["data"]["rollout"]["state"] == "halted"
    assert "self_test_failed" in body["data"]["rollout"]["halt_reason"]
    listed = cli("webhook", "list")
    assert "delivered (204)" in listed.stdout


def test_a_receiver_that_never_takes_it_is_given_up_after_the_last_attempt(fast_server, tmp_path, signing_key_path,
                                                                             make_image):
    server, cli = fast_server, Cli(fast_server, signing_key_path, tmp_path)
    with Receiver(always_fail=True) as receiver:
        assert cli("webhook", "add", receiver.url).returncode == 0
        halt_a_rollout(server, cli, make_image)
        failed = wait_for(lambda: d if (d := deliveries(server)) and d[0]["state"] == "failed" else None, 20, "given up")
        time.sleep(1.5)  # observation window: no fourth attempt after giving up (backoff would be 1.6 s)
    assert failed[0]["attempts"] == 3 and failed[0]["last_status"] == 500 and failed[0]["last_error"] == "HTTP 500"
    assert len(receiver.posts) == 3
    with server.admin() as admin:
        hook = admin.get("/api/webhooks").json()["data"][0]
    assert hook["failed"] == 1 and hook["last_status"].startswith("failed (500")


def test_done_and_an_expiring_manifest_are_posted_once(fast_server, tmp_path, signing_key_path, make_image):
    server, cli = fast_server, Cli(fast_server, signing_key_path, tmp_path)
    with Receiver() as receiver:
        assert cli("webhook", "add", receiver.url).returncode == 0
        assert cli("publish", "1.1", str(make_image("1.1")), "--channel", "short", "--expires-in", "3d").returncode == 0
        assert cli("publish", "1.1", str(make_image("1.1")), "--channel", "long").returncode == 0
        assert cli("publish", "1.2", str(make_image("1.2")), "--channel", "long", "--staged").returncode == 0
        devices = [HttpDevice.enroll(server, f"long-{i}", channel="long") for i in range(3)]
        for d in devices:
            d.poll()
        assert cli("rollout", "start", "1.2", "--channel", "long", "--rings", "100").returncode == 0
        for d in devices:
            assert d.offered() == "1.2"
            d.update_to("1.2")
        wait_for(lambda: {json.loads(b)["event"] for _, _, b in receiver.posts} == {"rollout.done", "manifest.expiring"}, 20,
                 "rollout.done and manifest.expiring")
        time.sleep(1.5)  # observation window: five more housekeeping rounds notice the same manifest
    events = [json.loads(b) for _, _, b in receiver.posts]
    expiring = [e for e in events if e["event"] == "manifest.expiring"]
    assert len(expiring) == 1 and expiring[0]["data"]["channel"] == "short"  # long's manifest lasts 30 days
    assert expiring[0]["data"]["action"] == "release refresh --channel short"
    assert [e["data"]["rollout"]["version"] for e in events if e["event"] == "rollout.done"] == ["1.2"]


def test_webhook_urls_and_events_are_checked(server):
    with server.admin() as admin:
        for url in ["ftp://example.com/x", "http://user:pw@example.com/", "http://example.com/#x", "not a url",
                    "http://exa mple.com/", "http://" + "a" * 600]:
            r = admin.post("/api/webhooks", json={"url": url})
            assert r.status_code == 422, (url, r.text)
        assert admin.post("/api/webhooks", json={"url": "http://x.example/", "events": ["rollout.exploded"]}).status_code == 422
        assert admin.post("/api/webhooks", json={"url": "http://x.example/", "events": []}).status_code == 422
        assert admin.delete("/api/webhooks/999").status_code == 404
        assert admin.get("/api/webhooks").json()["count"] == 0

