"""HTTP client for the release server's admin API. Every failure is a ServerError (or a subclass the
server named), carrying the server's own sentence."""

from __future__ import annotations

import base64
from urllib.parse import quote
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx

from otaml import __version__
from otaml.core import errors
from otaml.core.errors import AuthError, ConfigError, ServerError

CHUNK = 64 * 1024


class ReleaseClient:
    def __init__(self, server: str, token: str, timeout: float = 60.0):
        self.server = server_url(server)
        try:
            self._http = httpx.Client(
                base_url=self.server, timeout=timeout,
                # X-Otaml-Client: the audit log tells CLI actions from other API clients (a label, not a credential).
                headers={"Authorization": f"Bearer {token}", "X-Otaml-Client": f"release-cli/{__version__}"},
            )
        except (httpx.InvalidURL, UnicodeError, ValueError) as e:  # e.g. a token that is not a header value
            raise ConfigError(f"cannot use --server/--token: {e}") from None

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ReleaseClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _request(self, method: str, path: str, **kw: Any) -> Any:
        try:
            r = self._http.request(method, path, **kw)
        except httpx.TransportError as e:
            raise ServerError(f"cannot reach the release server at {self.server}: {e or type(e).__name__}") from None
        except (httpx.HTTPError, httpx.InvalidURL) as e:
            raise ServerError(f"request to {self.server}{path} failed: {e or type(e).__name__}") from None
        if r.status_code >= 400:
            raise _error_from(r)
        try:
            return r.json() if r.content else None
        except ValueError:
            raise ServerError(f"expected JSON from {r.request.url}, got {r.content[:60]!r}: is --server a release server?") from None

    def info(self) -> dict[str, Any]:
        return self._request("GET", "/api/info")

    def publish(
        self,
        *,
        path: Path,
        channel: str,
        manifest: bytes,
        signature: str,
        public_pem: str,
        legacy_clients: bool,
        staged: bool = False,
        on_progress: Callable[[int], None] | None = None,
    ) -> dict[str, Any]:
        size = path.stat().st_size

        def body() -> Iterator[bytes]:
            with open(path, "rb") as f:
                while chunk := f.read(CHUNK):
                    yield chunk
                    if on_progress:
                        on_progress(len(chunk))

        return self._request(
            "POST",
            "/api/releases",
            params={
                "channel": channel, "filename": path.name, "legacy_clients": str(legacy_clients).lower(),
                "staged": str(staged).lower(),
            },
            headers={
                "Content-Type": "application/octet-stream",
                "Content-Length": str(size),
                "X-Otaml-Manifest": base64.b64encode(manifest).decode(),
                "X-Otaml-Signature": signature,
                "X-Otaml-Public-Key": base64.b64encode(public_pem.encode()).decode(),
            },
            content=body(),
        )

    def refresh(self, *, channel: str, manifest: bytes, signature: str) -> dict[str, Any]:
        return self._request(
            "POST",
            f"/api/channels/{_seg(channel)}/manifests",
            headers={"Content-Type": "application/json", "X-Otaml-Signature": signature},
            content=manifest,
        )

    def releases(self, channel: str | None = None) -> dict[str, Any]:
        return self._request("GET", "/api/releases", params={"channel": channel} if channel else None)

    def enroll(self, device_id: str) -> dict[str, Any]:
        return self._request("POST", "/api/devices", json={"device_id": device_id})

    def enroll_batch(self, devices: list[dict[str, Any]], rotate: bool) -> dict[str, Any]:
        return self._request("POST", "/api/devices/batch", json={"devices": devices, "rotate": rotate})

    def device_action(self, device_id: str, action: str) -> dict[str, Any]:
        """rotate-token, revoke, accept"""
        return self._request("POST", f"/api/devices/{quote(device_id, safe='')}/{action}")

    def remove_device(self, device_id: str) -> None:
        self._request("DELETE", f"/api/devices/{quote(device_id, safe='')}")

    def create_claim_token(self, spec: dict[str, Any]) -> dict[str, Any]:
        return self._request("POST", "/api/claim-tokens", json=spec)

    def claim_tokens(self) -> dict[str, Any]:
        return self._request("GET", "/api/claim-tokens")

    def revoke_claim_token(self, claim_id: int) -> dict[str, Any]:
        return self._request("POST", f"/api/claim-tokens/{claim_id}/revoke")

    def keys(self) -> dict[str, Any]:
        return self._request("GET", "/api/keys")

    def trust_key(self, public_pem: str) -> dict[str, Any]:
        return self._request("POST", "/api/keys", json={"public_pem": public_pem})

    def retire_key(self, key_id: str) -> dict[str, Any]:
        return self._request("POST", f"/api/keys/{quote(key_id, safe='')}/retire")

    def keysets(self) -> dict[str, Any]:
        return self._request("GET", "/api/keysets")

    def add_keyset(self, document_b64: str, signature: str) -> dict[str, Any]:
        return self._request("POST", "/api/keysets", json={"document": document_b64, "signature": signature})

    def devices(self, **filters: Any) -> dict[str, Any]:
        return self._request("GET", "/api/devices", params={k: v for k, v in filters.items() if v is not None})

    def events(self, device_id: str, limit: int = 50) -> dict[str, Any]:
        return self._request("GET", f"/api/devices/{_seg(device_id)}/events", params={"limit": limit})

    def update_device(self, device_id: str, **fields: Any) -> dict[str, Any]:
        return self._request("PATCH", f"/api/devices/{_seg(device_id)}", json=fields)

    def device_state(self, device_id: str) -> dict[str, Any]:
        return self._request("GET", f"/api/devices/{_seg(device_id)}/state")

    def start_rollout(self, spec: dict[str, Any]) -> dict[str, Any]:
        return self._request("POST", "/api/rollouts", json=spec)

    def rollouts(self, channel: str | None = None, active: bool = False) -> dict[str, Any]:
        params = {"active": str(active).lower(), **({"channel": channel} if channel else {})}
        return self._request("GET", "/api/rollouts", params=params)

    def rollout(self, rollout_id: int) -> dict[str, Any]:
        return self._request("GET", f"/api/rollouts/{_seg(rollout_id)}")

    def rollout_action(self, rollout_id: int, action: str) -> dict[str, Any]:
        return self._request("POST", f"/api/rollouts/{_seg(rollout_id)}/{_seg(action)}")

    def audit(self, **filters: Any) -> dict[str, Any]:
        return self._request("GET", "/api/audit", params={k: v for k, v in filters.items() if v is not None})

    def history(self, **filters: Any) -> dict[str, Any]:
        return self._request("GET", "/api/history", params={k: v for k, v in filters.items() if v is not None})

    def add_webhook(self, url: str, events: list[str]) -> dict[str, Any]:
        return self._request("POST", "/api/webhooks", json={"url": url, "events": events})

    def webhooks(self) -> dict[str, Any]:
        return self._request("GET", "/api/webhooks")

    def remove_webhook(self, webhook_id: int) -> None:
        self._request("DELETE", f"/api/webhooks/{_seg(webhook_id)}")

    def deliveries(self, webhook_id: int | None = None, limit: int = 50) -> dict[str, Any]:
        params: dict[str, Any] = {"limit": limit, **({"webhook_id": webhook_id} if webhook_id is not None else {})}
        return self._request("GET", "/api/webhooks/deliveries", params=params)

    def bulk_devices(self, spec: dict[str, Any]) -> dict[str, Any]:
        return self._request("POST", "/api/devices/bulk", json=spec)

    def config_layers(self) -> dict[str, Any]:
        return self._request("GET", "/api/config")

    def set_config(self, scope: str, name: str, properties: dict[str, int | str]) -> dict[str, Any]:
        return self._request("PUT", f"/api/config/{_seg(scope)}/{_seg(name)}", json=properties)

    def delete_config(self, scope: str, name: str) -> None:
        self._request("DELETE", f"/api/config/{_seg(scope)}/{_seg(name)}")


def _seg(value: object) -> str:
    """One path segment: a name with / or a newline in it stays one segment for the server to refuse."""
    return quote(str(value), safe="")


def server_url(text: str) -> str:
    """--server / OTAML_SERVER: an http(s) URL with a host. Raises ConfigError with what arrived."""
    try:
        url = httpx.URL(text.strip())
        ok = url.scheme in ("http", "https") and bool(url.host)
    except (httpx.InvalidURL, ValueError, TypeError):
        ok = False
    if not ok:
        raise ConfigError(f"expected a release server URL like http://127.0.0.1:8000 (--server or OTAML_SERVER), got {text[:80]!r}")
    return text.strip().rstrip("/")


def _error_from(r: httpx.Response) -> errors.OtamlError:
    try:
        body = r.json()
    except ValueError:
        body = {}
    detail = body.get("detail") if isinstance(body, dict) else None
    if isinstance(detail, list):  # FastAPI request validation: name the first bad field
        first = detail[0] if detail else {}
        where = ".".join(str(p) for p in first.get("loc", [])[1:]) or "request"
        detail = f"invalid {where}: {first.get('msg', 'rejected')}"
    message = detail or f"HTTP {r.status_code} from {r.request.url}"
    if r.status_code == 401:
        return AuthError(f"{message} (check --token / OTAML_ADMIN_TOKEN)")
    cls = getattr(errors, str(body.get("error", "")) if isinstance(body, dict) else "", None)
    if isinstance(cls, type) and issubclass(cls, errors.OtamlError):
        return cls(message)
    return ServerError(f"server answered {r.status_code}: {message}")
