"""`release audit`, `release webhook ...`, `release history`: thin commands over the API."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import click
from rich.table import Table

from otaml.cli.client import ReleaseClient
from otaml.cli.options import err, json_option, out, server_option, token_option

EVENTS = ("rollout.halted", "rollout.done", "manifest.expiring")


@click.command()
@click.option("--action", default=None, help="Only this action or prefix (rollout, device.pin, release.publish, ...).")
@click.option("--outcome", type=click.Choice(["ok", "refused", "denied"]), default=None)
@click.option("--limit", type=click.IntRange(1, 1000), default=50, show_default=True)
@server_option
@token_option
@json_option
def audit(action: str | None, outcome: str | None, limit: int, server: str, token: str, as_json: bool) -> None:
    """Who did what, to what, when and from where (admin actions through the API, CLI and dashboard)."""
    with ReleaseClient(server, token) as client:
        page = client.audit(action=action, outcome=outcome, limit=limit)
    if as_json:
        click.echo(json.dumps(page, indent=2))
        return
    table = Table("time (UTC)", "source", "client", "credential", "action", "target", "outcome", "detail")
    for e in page["data"]:
        table.add_row(e["at"][:19], e["source"], e["client"], e["credential"], e["action"], e["target"], e["outcome"], e["detail"])
    out.print(table)
    out.print(f"{len(page['data'])} of {page['count']} entries")


@click.group()
def webhook() -> None:
    """Signed JSON posts on rollout.halted, rollout.done and manifest.expiring."""


@webhook.command("add")
@click.argument("url")
@click.option("--event", "events", multiple=True, type=click.Choice(EVENTS), help="Repeat; default: all of them.")
@server_option
@token_option
@json_option
def webhook_add(url: str, events: tuple[str, ...], server: str, token: str, as_json: bool) -> None:
    """Post to URL on EVENTS; prints the signing secret once."""
    with ReleaseClient(server, token) as client:
        hook = client.add_webhook(url, list(events or EVENTS))
    if as_json:
        click.echo(json.dumps(hook, indent=2))
        return
    out.print(f"webhook [bold]{hook['id']}[/] posts {', '.join(hook['events'])} to {hook['url']}")
    out.print(f"secret: {hook['secret']}")
    err.print("verify each post: X-Otaml-Signature-256 is sha256=HMAC-SHA256(secret, body) in hex; the secret is not shown again")


@webhook.command("list")
@server_option
@token_option
@json_option
def webhook_list(server: str, token: str, as_json: bool) -> None:
    """Webhooks and their delivery counts."""
    with ReleaseClient(server, token) as client:
        data = client.webhooks()["data"]
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    table = Table("id", "url", "events", "delivered", "pending", "failed", "last attempt")
    for h in data:
        table.add_row(str(h["id"]), h["url"], ", ".join(h["events"]), str(h["delivered"]), str(h["pending"]), str(h["failed"]),
                      h["last_status"])
    out.print(table if data else "no webhooks: `release webhook add URL`")


@webhook.command("remove")
@click.argument("webhook_id", type=int)
@server_option
@token_option
def webhook_remove(webhook_id: int, server: str, token: str) -> None:
    """Remove a webhook and its deliveries."""
    with ReleaseClient(server, token) as client:
        client.remove_webhook(webhook_id)
    out.print(f"webhook {webhook_id} removed")


@webhook.command("deliveries")
@click.option("--webhook", "webhook_id", type=int, default=None)
@click.option("--limit", type=click.IntRange(1, 500), default=20, show_default=True)
@server_option
@token_option
@json_option
def webhook_deliveries(webhook_id: int | None, limit: int, server: str, token: str, as_json: bool) -> None:
    """Recent deliveries: state, attempts, the last answer."""
    with ReleaseClient(server, token) as client:
        data = client.deliveries(webhook_id, limit)["data"]
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    table = Table("id", "hook", "event", "state", "attempts", "last answer", "next attempt (UTC)", "created (UTC)")
    for d in data:
        answer = str(d["last_status"]) if d["last_status"] is not None else (d["last_error"] or "-")
        table.add_row(str(d["id"]), str(d["webhook_id"]), d["event"], d["state"], str(d["attempts"]), answer,
                      d["next_attempt_at"][:19] if d["state"] == "pending" else "", d["created_at"][:19])
    out.print(table)


@click.command()
@click.option("--range", "range_", type=click.Choice(["1h", "24h", "7d"]), default="1h", show_default=True)
@click.option("--channel", default=None)
@click.option("--version", "version_", default=None, help="One release (with --channel).")
@server_option
@token_option
@json_option
def history(range_: str, channel: str | None, version_: str | None, server: str, token: str, as_json: bool) -> None:
    """The fleet over time: polls, devices online, class rates and latency per point that has data."""
    with ReleaseClient(server, token) as client:
        h = client.history(range=range_, channel=channel, version=version_)
    if as_json:
        click.echo(json.dumps(h, indent=2))
        return
    starts = h["checkins"]["starts"]
    rates = h["class_rates"]["lines"]
    latency = h["latency"]["lines"]
    table = Table("time (UTC)", "polls", "devices", *rates.keys(), *[f"latency {v} (us)" for v in latency])
    for i, start in enumerate(starts):
        polls = h["checkins"]["lines"]["polls"][i]
        if not polls:
            continue
        table.add_row(
            datetime.fromtimestamp(start, UTC).strftime("%m-%d %H:%M"), f"{polls:.0f}", f"{h['devices']['lines']['online'][i]:.0f}",
            *[f"{100 * v[i]:.0f}%" if v[i] is not None else "-" for v in rates.values()],
            *[f"{v[i]:.0f}" if v[i] is not None else "-" for v in latency.values()],
        )
    out.print(table)
