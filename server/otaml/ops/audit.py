"""The audit log: every admin action through the API (and so the CLI) and the dashboard, with what was
done, to what, when, from which address and with which credential; refused attempts too.

- ``ok``: the action was done.
- ``refused``: an authenticated request the server understood and would not do (a rollout that cannot
  be resumed from its state, a pin the device could not follow): the operator tried it, so it is part
  of the record.
- ``denied``: a wrong admin token or dashboard password. These come from anyone who can reach the
  server, so a process writes at most ``DENIED_PER_MINUTE`` of them a minute; the next one that is
  written says how many were left out. A flood costs a counter, not the database.

The credential is named by a fingerprint (the first 8 hex digits of SHA-256 over the admin token), so
a rotated token shows in the log without the log holding anything that authenticates. The client
address is the peer's as the server resolves it (``X-Forwarded-For`` is taken only from the proxies it
trusts, ``OTAML_FORWARDED_ALLOW_IPS``: 127.0.0.1 by default; api/main.py); a forwarded address that differs
from it is recorded beside it as what the request claimed.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections import deque
from dataclasses import dataclass

from sqlalchemy.engine import Engine
from sqlmodel import Session
from starlette.requests import Request

from otaml.models import AuditEntry

log = logging.getLogger("otaml.audit")
DENIED_PER_MINUTE = 30


def fingerprint(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()[:8]


def _clip(text: str, n: int) -> str:
    text = "".join(ch if ch.isprintable() else "?" for ch in text)
    return text if len(text) <= n else text[: n - 3] + "..."


@dataclass(frozen=True)
class Actor:
    source: str  # api | cli | dashboard
    client: str
    credential: str


def actor(request: Request, admin_token: str, *, dashboard: bool = False, authenticated: bool = True) -> Actor:
    peer = request.client.host if request.client else "?"
    forwarded = request.headers.get("x-forwarded-for", "").split(",")[0].strip()
    client = f"{forwarded} via {peer}" if forwarded and forwarded != peer else peer
    if dashboard:
        source = "dashboard"
    else:
        # What the client says it is (the `release` CLI sends it); a label, never a credential.
        source = "cli" if request.headers.get("x-otaml-client", "").startswith("release-cli") else "api"
    if not authenticated:
        credential = "none or a wrong token"
    elif dashboard:
        credential = f"dashboard session, admin token {fingerprint(admin_token)}"
    else:
        credential = f"admin token {fingerprint(admin_token)}"
    return Actor(source, _clip(client, 64), credential)


class DeniedLimiter:
    """At most ``per_minute`` denied entries in any 60 seconds per process (a sliding window: a fixed
    one would let twice as many through across its boundary); counts what it left out."""

    def __init__(self, per_minute: int = DENIED_PER_MINUTE):
        self._lock = threading.Lock()
        self._per_minute = per_minute
        self._admitted: deque[float] = deque()  # monotonic times of the entries written in the last minute
        self.skipped = 0

    def admit(self) -> int | None:
        """None: leave this one out; else how many were left out before it (and reset that count)."""
        with self._lock:
            now = time.monotonic()
            while self._admitted and now - self._admitted[0] >= 60:
                self._admitted.popleft()
            if len(self._admitted) >= self._per_minute:
                self.skipped += 1
                return None
            self._admitted.append(now)
            skipped, self.skipped = self.skipped, 0
            return skipped


def write(engine: Engine, who: Actor, action: str, target: str = "", detail: str = "", outcome: str = "ok") -> None:
    """One entry in its own transaction (a refused request's transaction was rolled back). Never
    raises: an audit write that fails is logged, the action's answer stands."""
    entry = AuditEntry(source=who.source, client=who.client, credential=_clip(who.credential, 64), action=_clip(action, 48),
                       target=_clip(target, 128), detail=_clip(detail, 256), outcome=outcome)
    try:
        with Session(engine) as session:
            session.add(entry)
            session.commit()
    except Exception:
        log.exception("could not write the audit entry %s %s (%s)", action, target, outcome)


class Audit:
    """Handed to an admin route (api/deps.py AuditDep): the route names what it is about to do with
    ``about``; the dependency writes ``ok`` when the route returns and ``refused`` with the error's
    sentence when it raises an OtamlError. ``detail`` may be set on the way."""

    def __init__(self, engine: Engine, who: Actor):
        self.engine = engine
        self.who = who
        self.action = ""
        self.target = ""
        self.detail = ""

    def about(self, action: str, target: str = "", detail: str = "") -> None:
        self.action, self.target, self.detail = action, target, detail

    def finish(self, outcome: str, detail: str | None = None) -> None:
        if self.action:
            write(self.engine, self.who, self.action, self.target, self.detail if detail is None else detail, outcome)
