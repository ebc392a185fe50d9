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
venv=${RCTR_VENV:-/opt/rctr/venv}  # another venv keeps parallel runs apart
if [ ! -x "$venv/bin/rctr" ]; then
    echo "test.sh: $venv is missing: run scripts/setup.sh first" >&2
    exit 1
fi
# The unprivileged users cannot read a checkout under /root: test the
# installed copy, refreshed from this checkout.
# flock: several test runs at once must not interleave their installs; an
# unchanged tree is not installed again (a reinstall briefly removes the
# package under any other run).
flock /tmp/rctr-install.lock sh -c '
    stamp=$(cd "$2" && find pyproject.toml core rootless storage netstack shim daemon cli \
            -name "*.py" -o -name pyproject.toml | sort | xargs cat | sha256sum)
    [ "$stamp" = "$(cat "$1/.rctr-installed" 2>/dev/null)" ] && exit 0
    rm -f "$1/.rctr-installed"
    if "$1/bin/pip" install -q --disable-pip-version-check --no-deps --no-build-isolation "$2" \
            >/tmp/rctr-install.log 2>&1; then
        echo "$stamp" > "$1/.rctr-installed"
    fi
    grep -v "^WARNING" /tmp/rctr-install.log
    rm -rf "$2/build" "$2"/*.egg-info' install "$venv" "$repo" || true
cd "$repo"
exec "$venv/bin/python" -m pytest "$@"
