"""rctr.cli: the `rctr` command, a client of the daemon's API (and the runtime's adaptor)."""
