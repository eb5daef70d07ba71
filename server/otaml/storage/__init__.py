"""Files on disk: content-addressed binaries and the static mirror of what devices fetch."""
