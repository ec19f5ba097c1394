#!/usr/bin/env bash
# The thermostat demo: a BME280 over I2C, a relay with hysteresis, an hour
# of readings and a chart on a display; kill -9 loses none of it.
set -euo pipefail
cd "$(dirname "$0")/.."
phantom=target/release/phantom
guest=target/guests/components/thermostat.wasm
demo=guests/thermostat/demo
data=${PHANTOM_DEMO_DIR:-$(mktemp -d /tmp/phantom-thermostat.XXXXXX)}
out=${PHANTOM_DEMO_OUT:-thermostat.png}

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "phantom spawn thermostat: a relay, the simulated BME280 and a screen granted"
$phantom spawn "$guest" --data "$data" --name thermostat \
  --devices "$demo/devices.toml" --scenario "$demo/scenario.toml" \
  -- --low 20 --high 22 --period-ms 250

step "phantom run for about 6 s, then kill -9"
$phantom run --data "$data" --no-stdin &
pid=$!
sleep 6
kill -9 "$pid"
wait "$pid" 2>/dev/null || true
echo "(host killed with SIGKILL)"

step "phantom devices thermostat: the relay as the thermostat last set it"
$phantom devices --data "$data" thermostat

step "phantom run again for 3 s: the readings, the relay and the chart go on"
$phantom run --data "$data" --for 3 --no-stdin

step "phantom display thermostat -o $out: the chart"
$phantom display --data "$data" thermostat -o "$out"
echo "the process lives in $data (phantom run --data $data to go on)"
