#!/usr/bin/env bash
# A real full disk (ENOSPC): roost's database on a small tmpfs, a persistent
# subscriber's queue filled with QoS 1 messages until the commits fail, then
# space freed. Every message roost acknowledged must be delivered after a
# restart, with the session and its subscription still there. A persistent
# session that connects while the disk is full is refused (0x03) or kept,
# never accepted and then lost. Needs root
# (mount); CI runs as root. Uses paho-mqtt as the client (.ci/disk_full.py).
#
# Environment: ROOST_BIN (the release binary; built if unset),
# ROOST_PORT (default 18993).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
HOST=127.0.0.1
PORT="${ROOST_PORT:-18993}"
WORK="$(mktemp -d /tmp/roost-disk-full.XXXXXX)"
DISK="$WORK/disk"
ROOST_PID=""

log() { echo "disk-full: $*"; }

cleanup() {
    if [[ -n "$ROOST_PID" ]] && kill -0 "$ROOST_PID" 2>/dev/null; then
        kill -KILL "$ROOST_PID" 2>/dev/null || true
        wait "$ROOST_PID" 2>/dev/null || true
    fi
    umount "$DISK" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

if [[ "$(id -u)" -ne 0 ]]; then
    log "needs root to mount a tmpfs"
    exit 1
fi

ROOST="${ROOST_BIN:-}"
if [[ -z "$ROOST" ]]; then
    (cd "$REPO" && cargo build --release --quiet)
    ROOST="${CARGO_TARGET_DIR:-$REPO/target}/release/roost"
fi

if ! python3 -m venv "$WORK/venv" >/dev/null 2>&1; then
    apt-get install -y -qq python3-venv >/dev/null
    python3 -m venv "$WORK/venv"
fi
PY="$WORK/venv/bin/python"
"$PY" -m pip install -q --disable-pip-version-check 'paho-mqtt>=2,<3'

mkdir -p "$DISK"
mount -t tmpfs -o size=6m tmpfs "$DISK"
# Room for the database and a few dozen messages; the rest is a filler file
# that the client deletes once the disk is full, to free space.
dd if=/dev/zero of="$DISK/filler" bs=1M count=3 status=none

start_roost() {
    "$ROOST" --listen "$HOST:$PORT" --db "$DISK/roost.db" >>"$WORK/roost.log" 2>&1 &
    ROOST_PID=$!
    for _ in $(seq 1 100); do
        if grep -q "roost listening on" "$WORK/roost.log" 2>/dev/null \
            && [[ "$(grep -c 'roost listening on' "$WORK/roost.log")" -ge "$1" ]]; then
            return 0
        fi
        sleep 0.1
    done
    log "roost did not start:"
    cat "$WORK/roost.log"
    exit 1
}

stop_roost() {
    kill -TERM "$ROOST_PID"
    wait "$ROOST_PID" || true
    ROOST_PID=""
}

start_roost 1
log "roost $("$ROOST" --version) on $HOST:$PORT, database on a 6 MiB tmpfs"
if ! OUT="$("$PY" "$REPO/.ci/disk_full.py" fill "$HOST" "$PORT" "$DISK/filler")"; then
    log "FAIL while filling the disk; roost's log:"
    tail -20 "$WORK/roost.log"
    exit 1
fi
if ! grep -q "database commit of .* failed" "$WORK/roost.log"; then
    log "FAIL: no commit failed, the disk never filled; roost's log:"
    tail -20 "$WORK/roost.log"
    exit 1
fi
ACKED="$(echo "$OUT" | sed -n 1p)"
LATE_ACKED="$(echo "$OUT" | sed -n 2p)"
grep -m1 "database commit of .* failed" "$WORK/roost.log" | sed 's/^/disk-full: roost: /'
grep -m1 "database commit succeeded after" "$WORK/roost.log" | sed 's/^/disk-full: roost: /' || true
log "$(echo "$ACKED" | tr ',' '\n' | wc -l) messages acknowledged; restarting roost"
stop_roost
start_roost 2
if ! "$PY" "$REPO/.ci/disk_full.py" drain "$HOST" "$PORT" full-sub "$ACKED" \
    || ! "$PY" "$REPO/.ci/disk_full.py" drain "$HOST" "$PORT" late-sub "$LATE_ACKED"; then
    log "FAIL after the restart; roost's log:"
    tail -20 "$WORK/roost.log"
    exit 1
fi
stop_roost
log "PASS"
