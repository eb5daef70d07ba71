"""`release`: keygen, serve, enroll, publish, refresh, list, devices, events, rollout, device, config, demo,
audit, webhook, history.

One error funnel (``main``): an OtamlError prints "A fatal error occurred: <reason>" and exits 2, with no
traceback; Ctrl-C prints "cancelled by user" and exits 130.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import click
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn
from rich.table import Table

from otaml import __version__
from otaml.cli import fleet, insight, provision, publishing
from otaml.cli.client import ReleaseClient
from otaml.cli.options import err, json_option, key_option, out, server_option, token_option
from otaml.core.config import INSECURE_ADMIN_TOKEN
from otaml.core.errors import ConfigError, OtamlError
from otaml.manifest import signing



def _duration(_ctx: click.Context, _param: click.Parameter, value: str) -> int:
    try:
        return publishing.parse_duration(value)
    except OtamlError as e:
        raise click.BadParameter(str(e)) from None


expires_option = click.option(
    "--expires-in", default="30d", show_default=True, callback=_duration,
    help="Manifest lifetime (30d, 12h, ...). Devices refuse an expired manifest: run `release refresh` before.",
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="release")
def cli() -> None:
    """Sign and publish ESP32 firmware, and see which device runs what."""


@cli.command()
@key_option
@click.option("--force", is_flag=True, help="Replace an existing key (devices pinning the old one will refuse updates).")
def keygen(key: Path, force: bool) -> None:
    """Create the ECDSA P-256 release signing key (private key written 0600)."""
    new = signing.generate_key()
    pub = signing.write_keypair(new, key, force=force)
    out.print(f"signing key [bold]{new.key_id}[/] written to {key} (0600)")
    out.print(f"public key: {pub} - embed it in the firmware (firmware/main/keys/manifest_pub.pem) before the first USB flash")


@cli.command()
@click.option("--data-dir", envvar="OTAML_DATA_DIR", type=click.Path(file_okay=False, path_type=Path), help="[env OTAML_DATA_DIR, default ./otaml-data]")
@click.option("--host", envvar="OTAML_HOST", default="127.0.0.1", show_default=True, help="[env OTAML_HOST]")
@click.option("--port", envvar="OTAML_PORT", type=int, default=8000, show_default=True, help="[env OTAML_PORT]")
@click.option("--workers", envvar="OTAML_WORKERS", type=click.IntRange(1, 64), default=1, show_default=True,
              help="Server processes sharing the port (use PostgreSQL for more than one) [env OTAML_WORKERS].")
@click.option("--log-level", default="info", show_default=True, type=click.Choice(["debug", "info", "warning", "error"]))
def serve(data_dir: Path | None, host: str, port: int, workers: int, log_level: str) -> None:
    """Run the release server (granian, a Rust HTTP server; SQLite and a local folder by default)."""
    from pydantic import ValidationError

    from otaml.api.server import run
    from otaml.core.config import Settings

    overrides: dict[str, Any] = {"host": host, "port": port}
    if data_dir is not None:
        overrides["data_dir"] = data_dir
    try:
        settings = Settings(**overrides)
    except ValidationError as e:
        raise ConfigError("; ".join(x["msg"].removeprefix("Value error, ") for x in e.errors())) from None
    if settings.environment == "development" and settings.admin_token == INSECURE_ADMIN_TOKEN:
        err.print("[yellow]development mode: the admin token is the default 'changethis'; set OTAML_ADMIN_TOKEN for anything real[/]")
    err.print(f"serving project [bold]{settings.project}[/] at {settings.base_url}, data in {settings.data_dir.resolve()}")
    run(settings, workers, log_level)


@cli.command()
@click.argument("device_id")
@server_option
@token_option
@json_option
def enroll(device_id: str, server: str, token: str, as_json: bool) -> None:
    """Enroll DEVICE_ID and print its token (shown once)."""
    with ReleaseClient(server, token) as client:
        device = client.enroll(device_id)
    if as_json:
        click.echo(json.dumps({"device_id": device["device_id"], "token": device["token"]}))
        return
    out.print(f"enrolled [bold]{device['device_id']}[/]")
    out.print(f"token: {device['token']}")
    out.print("put it in the device's NVS (namespace otaml, key token) or in CONFIG_OTAML_DEVICE_TOKEN; it is not shown again")


@cli.command()
@click.argument("version")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--channel", default="stable", show_default=True, help="Channel to publish to.")
@click.option("--chip", default=None, help="Target chip (default: the server's OTAML_CHIP).")
@click.option("--no-legacy-clients", "no_legacy", is_flag=True, help="Allow versions that numeric clients would read as older (1.10 after 1.9).")
@click.option("--staged", is_flag=True, help="Store and sign it, but offer it only through `release rollout start`.")
@expires_option
@server_option
@token_option
@key_option
def publish(version: str, file: Path, channel: str, chip: str | None, no_legacy: bool, staged: bool, expires_in: int,
            server: str, token: str, key: Path) -> None:
    """Validate FILE as release VERSION, sign its manifest and publish it."""
    signing_key = signing.load_private_key(key)
    progress = Progress(
        TextColumn("uploading {task.fields[name]}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
        console=err, transient=True, disable=not err.is_terminal,
    )
    task: list[Any] = []
    with ReleaseClient(server, token) as client, progress:
        result = publishing.publish(
            client, signing_key, version=version, path=file, channel=channel, chip=chip,
            expires_in=expires_in, legacy_clients=not no_legacy, staged=staged,
            on_start=lambda total: task.append(progress.add_task("upload", total=total, name=file.name)),
            on_progress=lambda n: progress.advance(task[0], n),
        )
    rate = result.size / max(result.seconds, 1e-6) / 1e6
    out.print(
        f"published [bold]{version}[/] to {channel}: {result.size:,} bytes in {result.seconds:.2f} s "
        f"({rate:.1f} MB/s), manifest_version {result.manifest_version}"
    )
    out.print(f"manifest: {result.manifest_url}")
    for model in result.models:
        out.print(model.summary())
    if not result.models:
        out.print("no model card in the image: no model to check")
    if staged:
        out.print(f"staged: no device is offered {version} until `release rollout start {version} --channel {channel}`")


@cli.command()
@click.option("--channel", default="stable", show_default=True)
@click.option("--version", "version_", default=None, help="A staged release under rollout instead of the current one.")
@expires_option
@server_option
@token_option
@key_option
def refresh(channel: str, version_: str | None, expires_in: int, server: str, token: str, key: Path) -> None:
    """Re-sign the channel's current manifest with the next manifest_version and a new expiry."""
    signing_key = signing.load_private_key(key)
    with ReleaseClient(server, token) as client:
        m = publishing.refresh(client, signing_key, channel=channel, expires_in=expires_in, version=version_)
    out.print(f"refreshed {channel}: {m['version']} as manifest_version {m['manifest_version']}, expires {m['expires']}Z")


@cli.command("list")
@click.option("--channel", default=None, help="Only this channel.")
@server_option
@token_option
@json_option
def list_(channel: str | None, server: str, token: str, as_json: bool) -> None:
    """What is published, per channel."""
    with ReleaseClient(server, token) as client:
        releases = client.releases(channel)["data"]
    if as_json:
        click.echo(json.dumps(releases, indent=2))
        return
    table = Table("channel", "version", "current", "size", "secure", "sha256", "published", "manifest", "expires")
    for r in releases:
        table.add_row(
            r["channel"], r["version"], "*" if r["current"] else "", f"{r['size']:,}", str(r["secure_version"]),
            r["sha256"][:12], r["created_at"][:19], str(r["manifest_version"] or ""), (r["expires"] or "")[:19],
        )
    out.print(table if releases else "nothing published yet: `release publish VERSION FILE`")


@cli.command()
@click.option("--version", "version_", default=None, help="Only devices reporting this version.")
@click.option("--channel", default=None, help="Only devices polling this channel.")
@click.option("--tag", default=None, help="Only devices carrying this tag.")
@click.option("--state", default=None, help="Only devices whose last update event is this (e.g. rolled_back).")
@click.option("--drift", type=click.Choice(["any", "firmware", "config"]), default=None,
              help="Only devices whose reported state differs from desired.")
@click.option("--limit", default=100, show_default=True)
@server_option
@token_option
@json_option
def devices(version_: str | None, channel: str | None, tag: str | None, state: str | None, drift: str | None,
            limit: int, server: str, token: str, as_json: bool) -> None:
    """Which device runs what, when it was last seen, its OTA state and last update event."""
    with ReleaseClient(server, token) as client:
        page = client.devices(version=version_, channel=channel, tag=tag, state=state, drift=drift, limit=limit)
    if as_json:
        click.echo(json.dumps(page, indent=2))
        return
    table = Table("device", "version", "channel", "partition", "state", "last seen (UTC)", "last event", "reason", "model")
    for d in page["data"]:
        table.add_row(
            d["device_id"] + ("" if d.get("status", "active") == "active" else f" ({d['status']})"),
            d["version"] or "-", d["channel"] or "-", d["partition"] or "-", d["ota_state"] or "-",
            (d["last_seen"] or "never")[:19], d["last_event"] or "", d["last_reason"] or "", d.get("ml_model") or "",
        )
    out.print(table)
    out.print(f"{len(page['data'])} of {page['count']} devices")


@cli.command()
@click.argument("device_id")
@click.option("--limit", default=50, show_default=True)
@server_option
@token_option
@json_option
def events(device_id: str, limit: int, server: str, token: str, as_json: bool) -> None:
    """A device's update history, newest first."""
    with ReleaseClient(server, token) as client:
        page = client.events(device_id, limit)
    if as_json:
        click.echo(json.dumps(page, indent=2))
        return
    table = Table("time (UTC)", "event", "version", "reason", "detail")
    for e in page["data"]:
        table.add_row(e["created_at"][:19], e["kind"], e["version"] or "", e["reason"], e["detail"])
    out.print(table)


def _mqtt_url(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    from otaml.manifest import rules

    if value is not None and not rules.mqtt_url_ok(value):
        raise click.BadParameter(f"expected (mqtt|mqtts)://HOST(:PORT)?, got {value[:100]!r}")
    return value


@cli.command()
@click.option("--devices", type=click.IntRange(1, 64), default=12, show_default=True, help="Simulated devices to run.")
@click.option("--port", type=click.IntRange(1, 65535), default=None,
              help="Refused if in use. Default: 8000, or a free port (named) if 8000 is taken.")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default=Path("otaml-demo"), show_default=True,
              help="Wiped and recreated (only if an earlier demo made it).")
@click.option("--duration", type=click.FloatRange(min=0), default=None, help="Stop after this many seconds (default: at Ctrl-C).")
@click.option("--until-done", is_flag=True, help="Stop as soon as the second rollout is done, halted or aborted (--duration caps it).")
@click.option("--pace", type=click.FloatRange(1, 600), default=20.0, show_default=True,
              help="Seconds between the demo's steps and of soak in each ring (lower it to watch less).")
@click.option("--mqtt", "mqtt_url", default=None, callback=_mqtt_url, metavar="URL",
              help="A broker (mqtt://HOST:PORT) for the devices' predictions and the server's fleet events; "
                   "prints the mosquitto_sub command that shows them.")
@click.option("--mqtt-user", default=None, help="Broker user name (with --mqtt).")
@click.option("--mqtt-pass", default=None, help="Broker password (with --mqtt).")
def demo(devices: int, port: int | None, data_dir: Path, duration: float | None, until_done: bool, pace: float,
         mqtt_url: str | None, mqtt_user: str | None, mqtt_pass: str | None) -> None:
    """Run a server and a fleet of simulated devices: a build whose model sees the field differently
    halts in its first ring on the ML gate, then the fixed build rolls out to done.

    It starts its own server and talks to nothing else: a port in use is refused."""
    from otaml.cli.demo import Demo, pick_port

    # one line per message, as written (a printed command stays copy-pasteable; "[::1]" is not markup)
    say = lambda text: err.print(f"demo: {text}", soft_wrap=True, markup=False, highlight=False)  # noqa: E731
    d = Demo(data_dir=data_dir, port=pick_port(port, say), devices=devices, say=say, mqtt_url=mqtt_url,
             mqtt_user=mqtt_user, mqtt_pass=mqtt_pass)
    try:
        summary = d.run(duration, until_done=until_done, pace=pace)
    finally:
        d.stop()
    out.print(f"demo: {summary}")


@cli.group()
def model() -> None:
    """On-device model packages (firmware/model)."""


@model.command("validate")
@click.argument("tflite", type=click.Path(dir_okay=False, path_type=Path))
def model_validate(tflite: Path) -> None:
    """Check a model package the firmware will embed: TFLITE and its .card.json beside it."""
    from otaml.ml.package import load_package, validate

    data, card = load_package(tflite)
    validate(data, card)
    out.print(
        f"{card.name} v{card.model_version}: {card.tflite_bytes:,} bytes, arena {card.arena_bytes:,} bytes, "
        f"ops {', '.join(card.ops)}; {len(card.golden)} golden inputs reproduce under TFLM; "
        f"accuracy float {card.accuracy['float']:.4f}, int8 {card.accuracy['int8']:.4f}"
    )


def _fatal(message: str) -> None:
    # Plain stderr, never wrapped: a refusal is one line for people and for scripts alike.
    sys.stderr.write(f"A fatal error occurred: {' '.join(message.split())}\n")
    sys.exit(2)


def main(argv: list[str] | None = None) -> None:
    try:
        cli.main(args=argv, prog_name="release", standalone_mode=False)
    except OtamlError as e:
        _fatal(str(e))
    except click.exceptions.NoArgsIsHelpError as e:
        click.echo(e.ctx.get_help() if e.ctx else "", err=True)
        sys.exit(2)
    except click.UsageError as e:  # bad option values, missing arguments: one line, no usage block
        command = e.ctx.command_path if e.ctx else "release"
        _fatal(f"{e.format_message()} (see `{command} --help`)")
    except click.ClickException as e:
        _fatal(e.format_message())
    except click.exceptions.Abort:
        err.print("cancelled by user")
        sys.exit(130)
    except KeyboardInterrupt:
        err.print("cancelled by user")
        sys.exit(130)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
    except Exception as e:  # a bug, not a refusal: still one line (OTAML_DEBUG=1 shows the traceback)
        if os.environ.get("OTAML_DEBUG"):
            raise
        _fatal(f"unexpected {type(e).__name__}: {e} (OTAML_DEBUG=1 shows where)")
    sys.exit(0)


cli.add_command(provision.provision)
cli.add_command(provision.claim)
cli.add_command(provision.key)
cli.add_command(fleet.rollout)
cli.add_command(fleet.device)
cli.add_command(fleet.config)
cli.add_command(insight.audit)
cli.add_command(insight.webhook)
cli.add_command(insight.history)


if __name__ == "__main__":  # pragma: no cover
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
