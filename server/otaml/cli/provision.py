"""`release provision`, `release claim ...`, `release key ...`: fleet provisioning and key management,
thin commands over otaml.provision, otaml.manifest.keyset and the server's API."""

from __future__ import annotations

import base64
import json
import shlex
import time
from pathlib import Path

import click
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from otaml.cli.client import ReleaseClient
from otaml.cli.options import err, json_option, key_option, out, server_option, token_option
from otaml.core.errors import ConfigError
from otaml.manifest import keyset, signing
from otaml.provision import batch, nvs

DEFAULT_PARTITIONS = Path(__file__).resolve().parents[3] / "firmware" / "partitions.csv"


def _progress() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=err, transient=False)


@click.command()
@click.argument("csv_file", required=False, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--count", type=int, help="Instead of a CSV: this many devices named PREFIX0001, PREFIX0002, ...")
@click.option("--prefix", default="dev-", show_default=True, help="Device id prefix for --count.")
@click.option("--start", type=click.IntRange(0, 10**9), default=1, show_default=True, help="First number for --count.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=Path("provisioned"),
              show_default=True, help="Folder for the images and index.csv (created 0700; images 0600).")
@click.option("--server-url", default=None, help="Server URL written into each device [default: --server].")
@click.option("--channel", default="", help="Channel for rows that name none (empty: the firmware's default).")
@click.option("--wifi-ssid", default="", help="Wi-Fi SSID for rows that name none.")
@click.option("--wifi-password", envvar="OTAML_WIFI_PASSWORD", default="", help="Wi-Fi password for rows that name none [env OTAML_WIFI_PASSWORD].")
@click.option("--tag", "tags", multiple=True, help="Tag every new device (repeat).")
@click.option("--claim-token", envvar="OTAML_CLAIM_TOKEN", default=None,
              help="Provision this fleet claim token instead of enrolling devices (`release claim create`); without a CSV "
                   "or --count, one image for every device (ids from their MAC).")
@click.option("--rotate-tokens", is_flag=True, help="Give already-enrolled ids new tokens instead of refusing them.")
@click.option("--partitions", type=click.Path(dir_okay=False, path_type=Path), default=DEFAULT_PARTITIONS,
              show_default=True, help="The firmware's partition table: the nvs partition's offset and size.")
@click.option("--chip", default="esp32", show_default=True, help="Chip for the esptool commands.")
@click.option("--port", default=None, help="Flash the (single) device's image now through esptool on this serial port.")
@click.option("--dry-run", is_flag=True, help="With --port: print the esptool command instead of running it.")
@server_option
@token_option
def provision(csv_file: Path | None, count: int | None, prefix: str, start: int, out_dir: Path, server_url: str | None,
              channel: str, wifi_ssid: str, wifi_password: str, tags: tuple[str, ...], claim_token: str | None,
              rotate_tokens: bool, partitions: Path, chip: str, port: str | None, dry_run: bool, server: str,
              token: str) -> None:
    """Enroll devices and write one NVS partition image per device (esp-idf-nvs-partition-gen), with an
    index of ids and the esptool command that flashes each. CSV columns: device_id, and optionally
    wifi_ssid, wifi_password, server_url, channel, tags."""
    started = time.monotonic()
    if csv_file is not None and count is not None:
        raise ConfigError("expected a CSV or --count, got both")
    if csv_file is None and count is None and claim_token is None:
        raise ConfigError("expected a CSV of devices or --count N (or --claim-token for one image for every device)")
    rows = batch.read_csv(csv_file) if csv_file else batch.numbered(prefix, count, start) if count else []
    part = nvs.nvs_partition(partitions)
    defaults = batch.Defaults(server_url=server_url or server, channel=channel, wifi_ssid=wifi_ssid,
                              wifi_password=wifi_password, tags=tuple(tags))
    batch._check_row(batch.Row("x", server_url=defaults.server_url, channel=channel, wifi_ssid=wifi_ssid,
                               wifi_password=wifi_password, tags=list(tags)), "options")
    if port is not None and len(rows) != 1 and not (claim_token and not rows):
        raise ConfigError(f"--port flashes one device: expected one device, got {len(rows)}")
    folder = batch.out_dir(out_dir)
    tokens: dict[str, str] = {}
    rotated = 0
    if claim_token is None:
        specs = [{"device_id": r.device_id, "tags": sorted(set(r.tags) | set(tags))} for r in rows]
        with ReleaseClient(server, token, timeout=300) as client:
            answer = client.enroll_batch(specs, rotate_tokens)
        tokens = {d["device_id"]: d["token"] for d in answer["data"]}
        rotated = sum(1 for d in answer["data"] if d["rotated"])
    elif not batch.batch_token_ok(claim_token):
        raise ConfigError("--claim-token: expected the token `release claim create` printed (16 to 64 of A-Z a-z 0-9 _ -)")
    targets = rows or [batch.Row("")]
    with _progress() as progress:
        task = progress.add_task("writing NVS images", total=len(targets))
        if rows:
            images = batch.write_images(rows, tokens, defaults, folder, part, chip, port or "PORT", claim=claim_token or "",
                                        progress=lambda n: progress.advance(task, n))
        else:
            path = folder / "fleet.bin"
            batch.write_secret(path, nvs.image(batch.nvs_values(batch.Row(""), defaults, claim=claim_token or ""), part.size))
            batch.write_index(folder / "index.csv", [("(any)", path, batch.flash_command(chip, port or "PORT", part.offset, path.resolve()))])
            images = [path]
            progress.advance(task, 1)
    elapsed = time.monotonic() - started
    what = "claim-token images" if claim_token else "devices enrolled"
    out.print(f"{len(images)} NVS images ({part.size} bytes for nvs at {part.offset:#x}) in {folder}/, {len(rows) or 1} {what}"
              f"{f', {rotated} with new tokens' if rotated else ''}, {elapsed:.1f} s; index: {folder / 'index.csv'}")
    if port is not None:
        command = batch.flash_command(chip, port, part.offset, images[0].resolve())
        if dry_run:
            out.print(shlex.join(command))
            return
        import esptool

        err.print(f"flashing {images[0].name} to {port} at {part.offset:#x}")
        try:
            esptool.main(command[1:])
        except (esptool.FatalError, OSError, SystemExit) as e:
            raise ConfigError(f"esptool could not flash {images[0].name} to {port}: {e}") from None


# ---- claim tokens ----


@click.group()
def claim() -> None:
    """Fleet claim tokens: provisioned instead of per-device tokens; devices claim their own."""


@claim.command("create")
@click.argument("name")
@click.option("--expires-in", default="7d", show_default=True, help="Lifetime (30d, 12h, 3600s).")
@click.option("--max-uses", type=click.IntRange(1, 1_000_000), default=100, show_default=True, help="Devices it may claim.")
@click.option("--tag", "tags", multiple=True, help="Tag every device claimed with it (repeat).")
@click.option("--approval", is_flag=True, help="Claimed devices wait as pending until `release device accept ID`.")
@server_option
@token_option
@json_option
def claim_create(name: str, expires_in: str, max_uses: int, tags: tuple[str, ...], approval: bool, server: str,
                 token: str, as_json: bool) -> None:
    """Create claim token NAME and print it (shown once)."""
    from otaml.cli.publishing import parse_duration

    spec = {"name": name, "expires_in": parse_duration(expires_in), "max_uses": max_uses, "tags": list(tags),
            "require_approval": approval}
    with ReleaseClient(server, token) as client:
        c = client.create_claim_token(spec)
    if as_json:
        click.echo(json.dumps(c))
        return
    out.print(f"claim token [bold]{c['name']}[/] (id {c['id']}): up to {c['max_uses']} devices until {c['expires_at']}"
              f"{', each pending until accepted' if c['require_approval'] else ''}")
    out.print(f"token: {c['token']}")
    out.print("provision it with `release provision --claim-token TOKEN`; it is not shown again")


@claim.command("list")
@server_option
@token_option
@json_option
def claim_list(server: str, token: str, as_json: bool) -> None:
    """Claim tokens with their uses and expiry."""
    with ReleaseClient(server, token) as client:
        data = client.claim_tokens()["data"]
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    table = Table("id", "name", "uses", "expires", "approval", "tags", "state")
    for c in data:
        table.add_row(str(c["id"]), c["name"], f"{c['uses']}/{c['max_uses']}", c["expires_at"][:19],
                      "yes" if c["require_approval"] else "", " ".join(c["tags"]), "revoked" if c["revoked"] else "")
    out.print(table)


@claim.command("revoke")
@click.argument("claim_id", type=int)
@server_option
@token_option
def claim_revoke(claim_id: int, server: str, token: str) -> None:
    """Refuse every later claim with this token (devices that claimed keep their own tokens)."""
    with ReleaseClient(server, token) as client:
        c = client.revoke_claim_token(claim_id)
    out.print(f"claim token [bold]{c['name']}[/] revoked ({c['uses']} devices claimed with it)")


# ---- release keys and key sets ----


@click.group()
def key() -> None:
    """Release keys the server trusts, and key sets that move devices to new keys without reflashing."""


@key.command("list")
@server_option
@token_option
@json_option
def key_list(server: str, token: str, as_json: bool) -> None:
    """Trusted and retired release keys, and the key-set chain."""
    with ReleaseClient(server, token) as client:
        keys, sets = client.keys()["data"], client.keysets()["data"]
    if as_json:
        click.echo(json.dumps({"keys": keys, "keysets": sets}, indent=2))
        return
    table = Table("key id", "trusted since", "retired", "note")
    for k in keys:
        table.add_row(k["key_id"], k["created_at"][:19], (k["retired_at"] or "")[:19], "repository test key" if k["test_key"] else "")
    out.print(table)
    if sets:
        table = Table("key set", "keys", "signed by", "published")
        for s in sets:
            table.add_row(str(s["keyset_version"]), " ".join(s["key_ids"]), s["signer"], s["created_at"][:19])
        out.print(table)
    else:
        out.print("no key set published: devices verify with the keys they were built with (key set 0)")


@key.command("trust")
@click.argument("public_keys", nargs=-1, required=True, type=click.Path(dir_okay=False, exists=True, path_type=Path))
@server_option
@token_option
def key_trust(public_keys: tuple[Path, ...], server: str, token: str) -> None:
    """Trust release public keys (PEM): manifests they sign are accepted."""
    with ReleaseClient(server, token) as client:
        for path in public_keys:
            k = client.trust_key(path.read_text())
            out.print(f"trusted [bold]{k['key_id']}[/] ({path})")


@key.command("retire")
@click.argument("key_id")
@server_option
@token_option
def key_retire(key_id: str, server: str, token: str) -> None:
    """Refuse manifests signed by KEY_ID from now on (publish a key set without it so devices refuse them too)."""
    with ReleaseClient(server, token) as client:
        k = client.retire_key(key_id)
    out.print(f"retired [bold]{k['key_id']}[/]: manifests it signs are refused")


@key.command("publish-set")
@click.argument("public_keys", nargs=-1, required=True, type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.option("--project", default=None, help="Project the set is for [default: the server's].")
@key_option
@server_option
@token_option
def key_publish_set(public_keys: tuple[Path, ...], project: str | None, key: Path, server: str, token: str) -> None:
    """Sign the next key set (these public keys, in this order) with --key, a key of the devices' current
    set, and publish it: devices verify manifests with it from their next poll on."""
    signer = signing.load_private_key(key)
    pubs = [signing.load_public_key(p.read_text()) for p in public_keys]
    if not 1 <= len(pubs) <= keyset.MAX_KEYS:
        raise ConfigError(f"expected 1 to {keyset.MAX_KEYS} public keys (the firmware's keyring), got {len(pubs)}")
    with ReleaseClient(server, token) as client:
        chain = client.keysets()["data"]
        version = chain[-1]["keyset_version"] + 1 if chain else 1
        body = keyset.build(version, project or client.info()["project"], pubs)
        row = client.add_keyset(base64.b64encode(body).decode(), signer.sign(body))
    out.print(f"key set [bold]{row['keyset_version']}[/] published: {' '.join(row['key_ids'])}, signed by {row['signer']}")
