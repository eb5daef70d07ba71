"""`release rollout ...`, `release device ...`, `release config ...`: thin commands over the API."""

from __future__ import annotations

import json
import re
from typing import Any

import click
from rich.table import Table

from otaml.cli.client import ReleaseClient
from otaml.cli.options import err, json_option, out, server_option, token_option
from otaml.core.errors import NotFoundError
from otaml.fleet import config as desired_config


def _percent_list(_ctx: click.Context, _param: click.Parameter, value: str) -> list[int]:
    try:
        return [int(x) for x in value.split(",")]
    except ValueError:
        raise click.BadParameter(f"expected comma-separated percentages like 1,10,50,100, got {value!r}") from None


def _pick(client: ReleaseClient, rollout_id: int | None, channel: str) -> int:
    if rollout_id is not None:
        return rollout_id
    active = client.rollouts(channel, active=True)["data"]
    if not active:
        raise NotFoundError(f"expected an unfinished rollout on channel {channel!r}, found none (name one by id)")
    return int(active[0]["id"])


def print_rollout(r: dict[str, Any]) -> None:
    state = r["state"]
    colour = {"running": "yellow" if r.get("attention") else "green", "halted": "red", "paused": "yellow",
              "aborted": "red", "done": "blue", "waiting": "bright_black"}.get(state, "")
    shown = "waiting for devices" if state == "waiting" else state
    out.print(
        f"rollout [bold]{r['id']}[/]: {r['version']} on {r['channel']} is [{colour}]{shown}[/] at ring "
        f"{r['stage']} ({r['rings'][r['stage']]}%) - confirmed {r['confirmed']}, failed {r['failed']}, pending {r['pending']}"
    )
    if r.get("status"):
        out.print(r["status"])
    ml = r.get("ml")
    gated = r.get("ml_max_divergence") is not None or r.get("ml_max_latency_regression") is not None
    if ml or gated:
        out.print(ml_line(r, ml))
    table = Table("ring", "up to", "bucket <", "devices", "confirmed", "failed", "silent", "retrying", "pending", "offered")
    for ring in r["rings_progress"]:
        table.add_row(
            str(ring["ring"]), f"{ring['percent']}%", str(ring["bound"]), str(ring["devices"]), str(ring["confirmed"]),
            str(ring["failed"]), str(ring["silent"]), str(ring.get("retrying", 0)), str(ring["pending"]),
            "yes" if ring["offered"] else "",
        )
    out.print(table)


def ml_line(r: dict[str, Any], ml: dict[str, Any] | None) -> str:
    """The ML gate's two measures next to their thresholds."""
    if not ml:
        return f"ML gate: no predictions reported yet on {r['version']} or its baseline"
    div, lat = ml.get("divergence"), ml.get("latency_regression_pct")
    div_limit = f" (max {r['ml_max_divergence']:g})" if r.get("ml_max_divergence") is not None else ""
    lat_limit = f" (max {r['ml_max_latency_regression']:g}%)" if r.get("ml_max_latency_regression") is not None else ""
    shown_div = f"{div:.3f}" if div is not None else "-"
    shown_lat = f"{lat:+.0f}%" if lat is not None else "-"
    return (f"ML gate: class-rate divergence {shown_div}{div_limit}, latency {shown_lat}{lat_limit}; "
            f"{r['version']} {ml['samples']:,} vs {ml.get('baseline_version') or 'baseline'} {ml['baseline_samples']:,} "
            f"predictions in the last {ml['window_s'] // 60} min")


@click.group()
def rollout() -> None:
    """Offer a staged release through rings that advance on success and halt on failures."""


@rollout.command("start")
@click.argument("version")
@click.option("--channel", default="stable", show_default=True)
@click.option("--rings", default="1,10,50,100", show_default=True, callback=_percent_list, help="Cumulative percentages of the fleet.")
@click.option("--tag", "tags", multiple=True, help="Only devices carrying this tag (repeat: all of them).")
@click.option("--device", "devices", multiple=True, help="Only these devices (repeat).")
@click.option("--success-pct", type=float, default=90.0, show_default=True, help="Share of a ring confirmed before the next ring.")
@click.option("--max-failures", type=int, default=None, help="Halt when more devices than this fail.")
@click.option("--max-failure-pct", type=float, default=20.0, show_default=True, help="Halt when this share of reports fail.")
@click.option("--min-reports", type=int, default=3, show_default=True, help="Outcomes needed before the failure threshold applies.")
@click.option("--silence-timeout", type=int, default=900, show_default=True, help="Seconds without a word after taking the update that count as a failure.")
@click.option("--soak", type=int, default=0, show_default=True, help="Minimum seconds in a ring before advancing.")
@click.option("--ml-max-divergence", type=float, default=None,
              help="Halt when the class rates of the release's devices diverge from the baseline's by more than this "
                   "(Jensen-Shannon divergence in bits, 0..1; e.g. 0.05).")
@click.option("--ml-max-latency-regression", type=float, default=None,
              help="Halt when the release's mean inference latency is more than this many percent above the baseline's.")
@click.option("--ml-min-samples", type=int, default=500, show_default=True,
              help="Predictions needed on each side before the ML gate judges; until then the ring does not advance.")
@click.option("--ml-window", type=int, default=900, show_default=True, help="Seconds of history the ML gate compares.")
@server_option
@token_option
@json_option
def rollout_start(version: str, channel: str, rings: list[int], tags: tuple[str, ...], devices: tuple[str, ...],
                  success_pct: float, max_failures: int | None, max_failure_pct: float, min_reports: int,
                  silence_timeout: int, soak: int, ml_max_divergence: float | None, ml_max_latency_regression: float | None,
                  ml_min_samples: int, ml_window: int, server: str, token: str, as_json: bool) -> None:
    """Start offering staged release VERSION (published with --staged)."""
    spec = {
        "channel": channel, "version": version, "rings": rings, "tags": list(tags), "devices": list(devices),
        "success_pct": success_pct, "max_failures": max_failures, "max_failure_pct": max_failure_pct,
        "min_reports": min_reports, "silence_timeout": silence_timeout, "soak_seconds": soak,
        "ml_max_divergence": ml_max_divergence, "ml_max_latency_regression": ml_max_latency_regression,
        "ml_min_samples": ml_min_samples, "ml_window": ml_window,
    }
    with ReleaseClient(server, token) as client:
        r = client.start_rollout(spec)
    if as_json:
        click.echo(json.dumps(r, indent=2))
        return
    print_rollout(r)


@rollout.command("status")
@click.argument("rollout_id", type=int, required=False)
@click.option("--channel", default=None, help="Only this channel.")
@click.option("--all", "show_all", is_flag=True, help="Finished rollouts too.")
@server_option
@token_option
@json_option
def rollout_status(rollout_id: int | None, channel: str | None, show_all: bool, server: str, token: str, as_json: bool) -> None:
    """Per-ring progress of one rollout, or of every unfinished one."""
    with ReleaseClient(server, token) as client:
        data = [client.rollout(rollout_id)] if rollout_id is not None else client.rollouts(channel, active=not show_all)["data"]
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    if not data:
        out.print("no unfinished rollout: `release publish VERSION FILE --staged`, then `release rollout start VERSION`")
    for r in data:
        print_rollout(r)


def _action(name: str, doc: str) -> click.Command:
    @click.argument("rollout_id", type=int, required=False)
    @click.option("--channel", default="stable", show_default=True, help="Without an id: the channel's unfinished rollout.")
    @server_option
    @token_option
    @json_option
    def command(rollout_id: int | None, channel: str, server: str, token: str, as_json: bool) -> None:
        with ReleaseClient(server, token) as client:
            r = client.rollout_action(_pick(client, rollout_id, channel), name)
        if as_json:
            click.echo(json.dumps(r, indent=2))
            return
        print_rollout(r)

    command.__doc__ = doc
    return click.command(name)(command)


rollout.add_command(_action("pause", "Stop offering the release to devices that do not have it yet."))
rollout.add_command(_action("resume", "Continue a paused or halted rollout (failures seen so far are acknowledged)."))
rollout.add_command(_action("abort", "End the rollout: the release is never offered again nor becomes the baseline."))


@click.group()
def device() -> None:
    """One device: tags, pin or hold, and desired vs reported state."""


def _print_device_change(d: dict[str, Any]) -> None:
    pin = f"pinned to {d['pin_version']}" if d["pin_version"] else ("held" if d["hold"] else "follows its channel")
    out.print(f"{d['device_id']}: tags {', '.join(d['tags']) or '-'}; {pin}")


@device.command("tag")
@click.argument("device_id")
@click.argument("tags", nargs=-1)
@server_option
@token_option
def device_tag(device_id: str, tags: tuple[str, ...], server: str, token: str) -> None:
    """Replace DEVICE_ID's tags (none: remove all)."""
    with ReleaseClient(server, token) as client:
        _print_device_change(client.update_device(device_id, tags=list(tags)))


@device.command("pin")
@click.argument("device_id")
@click.argument("version")
@click.option("--force", "force_reason", metavar="REASON", default=None,
              help="Pin even if VERSION is not a release of the device's channel or is older than what it runs; say why.")
@server_option
@token_option
def device_pin(device_id: str, version: str, force_reason: str | None, server: str, token: str) -> None:
    """Offer DEVICE_ID this VERSION only, whatever its channel's rollouts do.

    VERSION must be a release of the device's channel and not older than what the device runs (it would
    refuse an older manifest as replayed), unless --force REASON."""
    fields: dict[str, Any] = {"pin_version": version}
    if force_reason is not None:
        fields["force_reason"] = force_reason
    with ReleaseClient(server, token) as client:
        _print_device_change(client.update_device(device_id, **fields))


@device.command("unpin")
@click.argument("device_id")
@server_option
@token_option
def device_unpin(device_id: str, server: str, token: str) -> None:
    """Remove DEVICE_ID's pin: it follows its channel (rollouts, baseline) again."""
    with ReleaseClient(server, token) as client:
        _print_device_change(client.update_device(device_id, pin_version=""))


@device.command("hold")
@click.argument("device_id")
@click.option("--release", "release_", is_flag=True, help="End the hold.")
@server_option
@token_option
def device_hold(device_id: str, release_: bool, server: str, token: str) -> None:
    """Keep DEVICE_ID on what it runs (no pin, no rollout, no baseline update)."""
    with ReleaseClient(server, token) as client:
        _print_device_change(client.update_device(device_id, hold=not release_, pin_version=""))


def _credential_action(name: str, doc: str, done: str) -> click.Command:
    @click.argument("device_id")
    @server_option
    @token_option
    def command(device_id: str, server: str, token: str) -> None:
        with ReleaseClient(server, token) as client:
            c = client.device_action(device_id, name)
        rotation = "; a new token waits for its next check-in" if c["token_rotation_pending"] else ""
        out.print(f"{c['device_id']}: {done} (now {c['status']}{rotation})")

    command.__doc__ = doc
    return device.command(name)(command)


_credential_action("rotate-token", "Give DEVICE_ID a new token: its next authenticated poll hands it over, and the old "
                   "one stops working once the device has used the new one.", "token rotation started")
_credential_action("revoke", "Refuse every request of DEVICE_ID (401) from now on.", "revoked")
_credential_action("accept", "Accept DEVICE_ID, which claimed itself and waits for approval.", "accepted")


@device.command("remove")
@click.argument("device_id")
@click.option("--yes", is_flag=True, help="Do not ask.")
@server_option
@token_option
def device_remove(device_id: str, yes: bool, server: str, token: str) -> None:
    """Forget DEVICE_ID: its record, token and history (re-enroll it to bring it back)."""
    if not yes:
        click.confirm(f"remove {device_id} and its history?", abort=True, err=True)
    with ReleaseClient(server, token) as client:
        client.remove_device(device_id)
    out.print(f"{device_id}: removed")


@device.command("state")
@click.argument("device_id")
@server_option
@token_option
@json_option
def device_state(device_id: str, server: str, token: str, as_json: bool) -> None:
    """Desired next to reported: firmware version and configuration."""
    with ReleaseClient(server, token) as client:
        s = client.device_state(device_id)
    if as_json:
        click.echo(json.dumps(s, indent=2))
        return
    table = Table("", "desired", "reported", "differs")
    table.add_row("firmware", f"{s['desired_version'] or '-'} ({s['desired_because']})", s["reported_version"] or "-",
                  "yes" if s["firmware_differs"] else "")
    table.add_row(
        "config", f"rev {s['desired_config_revision']}: {_props(s['desired_config'])}",
        f"rev {s['reported_config_revision'] if s['reported_config_revision'] is not None else '-'}: {_props(s['reported_config'])}",
        "yes" if s["config_differs"] else "",
    )
    out.print(table)


def _props(p: dict[str, int | str] | None) -> str:
    return ", ".join(f"{k}={v}" for k, v in p.items()) if p else "-"


@click.group()
def config() -> None:
    """Desired configuration per channel, tag or device, delivered signed with each poll."""


def _assignment(_ctx: click.Context, _param: click.Parameter, value: tuple[str, ...]) -> dict[str, int | str]:
    """NAME=INTEGER, or NAME=TEXT for a string property (mqtt_url, mqtt_prefix); the server judges the values."""
    props: dict[str, int | str] = {}
    for item in value:
        name, sep, text = item.partition("=")
        prop = desired_config.PROPERTIES.get(name)
        if sep and prop is not None and prop.rule is not None:
            props[name] = text
            continue
        if not sep or not re.fullmatch(r"-?[0-9]{1,12}", text):
            raise click.BadParameter(f"expected NAME=INTEGER (or NAME=TEXT for mqtt_url, mqtt_prefix), got {item[:60]!r}")
        props[name] = int(text)
    return props


@config.command("set")
@click.argument("scope", type=click.Choice(["channel", "tag", "device"]))
@click.argument("name")
@click.argument("properties", nargs=-1, required=True, callback=_assignment)
@server_option
@token_option
def config_set(scope: str, name: str, properties: dict[str, int | str], server: str, token: str) -> None:
    """Set a layer: `release config set channel stable ml_interval_ms=500 alert_threshold=80`."""
    with ReleaseClient(server, token) as client:
        layer = client.set_config(scope, name, properties)
    out.print(f"{scope} {name}: {_props(layer['properties'])} (devices apply it at their next poll)")


@config.command("unset")
@click.argument("scope", type=click.Choice(["channel", "tag", "device"]))
@click.argument("name")
@server_option
@token_option
def config_unset(scope: str, name: str, server: str, token: str) -> None:
    """Remove a layer."""
    with ReleaseClient(server, token) as client:
        client.delete_config(scope, name)
    out.print(f"{scope} {name}: removed")


@config.command("show")
@server_option
@token_option
@json_option
def config_show(server: str, token: str, as_json: bool) -> None:
    """Every layer, and the properties a layer may set."""
    with ReleaseClient(server, token) as client:
        data = client.config_layers()
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    table = Table("scope", "name", "properties", "updated (UTC)")
    for layer in data["layers"]:
        table.add_row(layer["scope"], layer["name"], _props(layer["properties"]), layer["updated_at"][:19])
    out.print(table)
    for name, p in data["properties"].items():
        err.print(f"  {name}: {p['min']}..{p['max']}, {p['help']}")


@config.command("key")
@server_option
@token_option
def config_key(server: str, token: str) -> None:
    """Print the server's online config public key (PEM) for firmware/main/keys/config_pub.pem."""
    with ReleaseClient(server, token) as client:
        info = client.info()
    click.echo(info["config_public_key"], nl=False)
