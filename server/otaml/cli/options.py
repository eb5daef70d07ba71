"""Options and consoles every command shares."""

from __future__ import annotations

from pathlib import Path

import click
from rich.console import Console

from otaml.core.config import INSECURE_ADMIN_TOKEN
from otaml.manifest import signing

# Piped output (scripts, logs) gets wide tables instead of an 80-column guess with truncated cells.
out = Console() if Console().is_terminal else Console(width=200)
err = Console(stderr=True)
DEFAULT_KEY = Path("keys") / signing.PRIVATE_KEY_NAME

server_option = click.option(
    "--server", envvar="OTAML_SERVER", default="http://127.0.0.1:8000", show_default=True,
    help="Release server URL [env OTAML_SERVER].",
)
token_option = click.option(
    "--token", envvar="OTAML_ADMIN_TOKEN", default=INSECURE_ADMIN_TOKEN, show_default=False,
    help="Admin token [env OTAML_ADMIN_TOKEN; a development server's default if unset].",
)
key_option = click.option(
    "--key", envvar="OTAML_SIGNING_KEY", default=str(DEFAULT_KEY), show_default=True,
    type=click.Path(dir_okay=False, path_type=Path), help="Private signing key [env OTAML_SIGNING_KEY].",
)
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
