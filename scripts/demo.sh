#!/usr/bin/env bash
# The quick-start demo: a persistent counter survives kill -9.
set -euo pipefail
cd "$(dirname "$0")/.."
phantom=target/release/phantom
counter=target/guests/components/counter.wasm
data=$(mktemp -d /tmp/phantom-demo.XXXXXX)
trap 'rm -rf "$data"' EXIT

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "phantom spawn counter (init runs once, first checkpoint written)"
$phantom spawn "$counter" --data "$data" --name counter -- --period-ms 200

step "phantom run: counting, checkpoint every 500ms; kill -9 after 2.3s"
$phantom run --data "$data" --checkpoint-every 500ms --no-stdin &
pid=$!
sleep 2.3
kill -9 "$pid"
wait "$pid" 2>/dev/null || true
echo "(host killed with SIGKILL)"

step "phantom checkpoints counter"
$phantom checkpoints --data "$data" counter

step "phantom run again: the count continues from the last checkpoint, not from 1"
echo "(counts printed after that checkpoint and before the kill are computed again)"
$phantom run --data "$data" --for 1.2 --no-stdin -v

step "phantom ps"
$phantom ps --data "$data"
