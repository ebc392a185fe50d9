#!/usr/bin/env bash
# Set up a Debian 12 machine for rctr, as root, and run a first container.
#
# - installs the system packages rctr uses (apt) and rctr itself into
#   /opt/rctr/venv (made from Debian's /usr/bin/python3, readable by every user)
# - creates the unprivileged test users: rctr-test (with /etc/subuid and
#   /etc/subgid ranges) and rctr-nosub (without, for the single-id fallback)
# - opens /dev/fuse and /dev/net/tun to ordinary users where they are 0600
# - builds the busybox-static test image and runs a first container as an
#   ordinary user (the sudo user if there is one, else rctr-test)
set -euo pipefail

if [ "$(id -u)" != 0 ]; then
    echo "setup.sh: run me as root (sudo ./scripts/setup.sh)" >&2
    exit 1
fi
repo=$(cd "$(dirname "$0")/.." && pwd)
venv=/opt/rctr/venv
image=/opt/rctr/testimage
export DEBIAN_FRONTEND=noninteractive

say() { printf 'setup: %s\n' "$*"; }

say "installing system packages"
apt-get update -q >/dev/null
apt-get install -y -q --no-install-recommends \
    uidmap slirp4netns passt fuse-overlayfs busybox-static docker-registry \
    crun runc libseccomp2 python3 python3-venv python3-pip sudo iproute2 procps \
    podman skopeo libfuse2 tini iperf3 docker-compose \
    >/dev/null
# The tests drive rctrd with the stock docker CLI too (a client only); these
# machines ship one, and Debian's docker.io has one where they do not.
if ! command -v docker >/dev/null; then
    say "no docker CLI on PATH: installing Debian's docker.io for its client"
    apt-get install -y -q --no-install-recommends docker.io >/dev/null
fi

for dev in /dev/fuse /dev/net/tun; do
    if [ -e "$dev" ] && [ "$(stat -c %a "$dev")" != 666 ]; then
        chmod 0666 "$dev"
        say "made $dev usable by ordinary users (chmod 0666; desktop distributions ship it so)"
    fi
done

# crun refuses a hybrid cgroup layout whose v2 hierarchy holds controllers
# ("cgroups in hybrid mode not supported"): give each such controller its v1
# hierarchy, as a systemd host in hybrid mode would.
if [ -f /sys/fs/cgroup/unified/cgroup.controllers ]; then
    for ctrl in $(cat /sys/fs/cgroup/unified/cgroup.controllers); do
        mkdir -p "/sys/fs/cgroup/$ctrl"
        if mount -t cgroup -o "$ctrl" cgroup "/sys/fs/cgroup/$ctrl" 2>/dev/null; then
            say "mounted the cgroup v1 $ctrl hierarchy so crun accepts this hybrid host"
        fi
    done
fi

add_user() {  # name, with subids (yes/no)
    if ! id -u "$1" >/dev/null 2>&1; then
        useradd --create-home --shell /bin/bash "$1"
        say "created user $1"
    fi
    if [ "$2" = yes ]; then
        if ! grep -q "^$1:" /etc/subuid 2>/dev/null; then
            usermod --add-subuids 200000-265535 "$1"
        fi
        if ! grep -q "^$1:" /etc/subgid 2>/dev/null; then
            usermod --add-subgids 200000-265535 "$1"
        fi
    else
        sed -i "/^$1:/d" /etc/subuid /etc/subgid
    fi
}
add_user rctr-test yes
add_user rctr-nosub no

say "installing rctr into $venv"
if [ ! -x "$venv/bin/python" ]; then
    /usr/bin/python3 -m venv "$venv"
fi
"$venv/bin/pip" install -q --disable-pip-version-check wheel 2>&1 | grep -v '^WARNING' || true
"$venv/bin/pip" install -q --disable-pip-version-check "$repo[test]" 2>&1 | grep -v '^WARNING' || true
"$venv/bin/rctr" --version >/dev/null
ln -sf "$venv/bin/rctr" /usr/local/bin/rctr
chmod -R a+rX /opt/rctr

say "building the test image in $image"
rm -rf "$image"
/usr/bin/python3 "$repo/tests/support/testimage.py" oci "$image" >/dev/null
chmod -R a+rX "$image"

demo_user=${SUDO_USER:-}
if [ -z "$demo_user" ] || [ "$demo_user" = root ]; then
    demo_user=rctr-test
elif ! grep -q "^$demo_user:" /etc/subuid; then
    usermod --add-subuids 300000-365535 --add-subgids 300000-365535 "$demo_user"
    say "gave $demo_user subordinate ids 300000-365535"
fi
archive=$(dirname "$image")/testimage.tar
/usr/bin/python3 "$repo/tests/support/testimage.py" docker-archive "$archive" >/dev/null
chmod a+r "$archive"
say "running a first container as $demo_user: rctr load, then rctr run (rctrd starts on first use)"
runuser -u "$demo_user" -- sh -c '
    set -e
    export HOME="$(getent passwd "$(id -un)" | cut -d: -f6)"
    unset XDG_DATA_HOME
    if [ -d "/run/user/$(id -u)" ]; then export XDG_RUNTIME_DIR="/run/user/$(id -u)"; else unset XDG_RUNTIME_DIR; fi
    cd "$HOME"
    rctr load -q -i "$1"
    rctr run --rm rctr-test/busybox:latest \
        sh -c "echo hello from rctr: uid \$(id -u) in the container, pid \$\$, host \$(hostname)"
' sh "$archive"
if [ "$demo_user" = rctr-test ]; then
    # The test user starts the tests with nothing running: each test gives it its own
    # directories, and the faults suite counts every process of the user as its own.
    pkill -KILL -u rctr-test 2>/dev/null || true
    sleep 0.5
    rm -rf "/tmp/rctr-$(id -u rctr-test)"
    say "stopped the demo's rctrd again: rctr-test is the tests' user"
fi
say "done: rctr is installed; see README.md for the next steps"
