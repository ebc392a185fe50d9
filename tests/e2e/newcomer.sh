#!/usr/bin/env bash
# A newcomer's first steps, as README.md tells them, on a machine where
# scripts/setup.sh has run: a brand-new account with no rctr state at all gets
# subordinate ids from the admin (root), then, as that user, checks the host
# with `rctr doctor`, loads an image, runs a first container, and uses the
# everyday commands and the docker CLI.  Everything is undone at the end
# (containers, daemon, pause process, the account), even on failure.
#
# Run as root: tests/e2e/newcomer.sh [IMAGE_ARCHIVE]   (default /opt/rctr/testimage.tar)
set -euo pipefail

if [ "$(id -u)" != 0 ]; then
    echo "newcomer.sh: run me as root: I create and remove a user account" >&2
    exit 1
fi
archive=${1:-/opt/rctr/testimage.tar}
[ -r "$archive" ] || { echo "newcomer.sh: no image archive at $archive (run scripts/setup.sh)" >&2; exit 1; }
user="rctr-new-$$"
step() { printf 'newcomer: %s\n' "$*"; }

cleanup() {
    local uid
    uid=$(id -u "$user" 2>/dev/null) || return 0
    runuser -u "$user" -- env HOME="/home/$user" rctr system reset --force >/dev/null 2>&1 || true
    pkill -KILL -u "$uid" 2>/dev/null || true
    for _ in 1 2 3 4 5 6 7 8 9 10; do pgrep -u "$uid" >/dev/null || break; sleep 0.2; done
    # container processes run as the user's subordinate ids
    if [ -n "${sub_start:-}" ]; then
        for pid in $(ps -eo pid=,uid= | awk -v s="$sub_start" -v e=$((sub_start + 65536)) '$2 >= s && $2 < e {print $1}'); do
            kill -KILL "$pid" 2>/dev/null || true
        done
    fi
    userdel --remove "$user" >/dev/null 2>&1 || true
    sed -i "/^$user:/d" /etc/subuid /etc/subgid
    rm -rf "/tmp/rctr-$uid" "/tmp/$user-image.tar"
}
trap cleanup EXIT

step "the admin creates $user and gives it subordinate ids (README: Quick start)"
useradd --create-home --shell /bin/bash "$user"
uid=$(id -u "$user")
if [ -e "/tmp/rctr-$uid" ] || [ -d "/home/$user/.local/share/rctr" ]; then
    echo "newcomer.sh: $user already has rctr state" >&2
    exit 1
fi
# Debian's useradd gives new accounts subordinate ids itself (SUB_UID_MIN in
# /etc/login.defs); where it did not, the admin adds the first free 65536.
if ! grep -q "^$user:" /etc/subuid; then
    free=$(awk -F: 'BEGIN {m = 100000} {e = $2 + $3; if (e > m) m = e} END {print m}' /etc/subuid /etc/subgid)
    usermod --add-subuids "$free-$((free + 65535))" --add-subgids "$free-$((free + 65535))" "$user"
fi
sub_start=$(awk -F: -v u="$user" '$1 == u {print $2; exit}' /etc/subuid)
cp "$archive" "/tmp/$user-image.tar"
chown "$user" "/tmp/$user-image.tar"

step "as $user: the README's commands"
# A login shell without systemd-logind: no XDG_RUNTIME_DIR, so rctr uses /tmp/rctr-$UID.
runuser -u "$user" -- env -i HOME="/home/$user" USER="$user" LOGNAME="$user" \
    PATH=/usr/local/bin:/usr/bin:/bin LANG=C.UTF-8 IMAGE_TAR="/tmp/$user-image.tar" bash -euo pipefail -c '
    cd "$HOME"
    say() { printf "newcomer:   \$ %s\n" "$*"; }
    say rctr doctor;             rctr doctor
    say rctr load -i image.tar;  rctr load -i "$IMAGE_TAR"
    say rctr run --rm busybox;   out=$(rctr run --rm rctr-test/busybox:latest sh -c "echo hello from \$(hostname)")
    echo "$out";                 case "$out" in "hello from "*) ;; *) exit 1;; esac
    say rctr run -d --name web ...
    rctr run -d --name web -v data:/data rctr-test/busybox:latest \
        sh -c "while true; do date >> /data/log; sleep 0.2; done"
    say rctr ps;                 rctr ps | grep -q " web$"
    say rctr logs / exec;        rctr logs web >/dev/null; sleep 0.5; rctr exec web cat /data/log | grep -q .
    say docker ps;               DOCKER_HOST="unix:///tmp/rctr-$(id -u)/rctr.sock" docker ps --format "{{.Names}}" | grep -qx web
    say rctr stop / rm;          rctr stop -t 1 web >/dev/null; rctr rm web >/dev/null
    test -z "$(rctr ps -aq)"
    say rctr volume rm data;     rctr volume rm data >/dev/null
'
step "ok: a user with no rctr state went from nothing to a running container"
