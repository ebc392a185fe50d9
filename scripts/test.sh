#!/usr/bin/env bash
# Run rctr's tests, as root: unit tests in-process, integration tests by
# running rctr as the unprivileged users that scripts/setup.sh created.
# Extra arguments go to pytest (e.g. tests/unit, -k runtime).
set -euo pipefail

if [ "$(id -u)" != 0 ]; then
    echo "test.sh: run me as root (sudo ./scripts/test.sh); rctr itself runs as an ordinary user" >&2
    exit 1
fi
repo=$(cd "$(dirname "$0")/.." && pwd)
venv=/opt/rctr/venv
if [ ! -x "$venv/bin/rctr" ]; then
    echo "test.sh: $venv is missing: run scripts/setup.sh first" >&2
    exit 1
fi
# The unprivileged users cannot read a checkout under /root: test the
# installed copy, refreshed from this checkout.
# flock: several test runs at once must not interleave their installs.
flock /tmp/rctr-install.lock sh -c '
    "$1/bin/pip" install -q --disable-pip-version-check --no-deps --no-build-isolation "$2" \
        2>&1 | grep -v "^WARNING"
    rm -rf "$2/build" "$2"/*.egg-info' install "$venv" "$repo" || true
cd "$repo"
exec "$venv/bin/python" -m pytest "$@"
