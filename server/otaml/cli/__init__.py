"""The `release` command line: thin commands over otaml.cli.client and otaml.cli.publishing."""
