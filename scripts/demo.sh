#!/usr/bin/env bash
# The demo: a simulated Modbus thermostat, modbus-mapper, a local mosquitto and a live
# view of the twin. After the first reports it sends a desired setpoint as a twin delta
# (as edgecore would) and shows the register and the reported value change.
#   scripts/demo.sh           run until ctrl-c
#   scripts/demo.sh --smoke   check the whole path once and exit (used by CI)
set -euo pipefail
cd "$(dirname "$0")/.."
smoke=false
[ "${1:-}" = "--smoke" ] && smoke=true

scripts/deps.sh
echo "building (release)..." >&2
cargo build --release -q -p modbus-mapper -p modbus-sim

work=$(mktemp -d)
pids=()
cleanup() {
  trap - EXIT INT TERM
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
trap 'echo; echo "stopping..."; exit 0' INT TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_for() { # wait_for SECONDS COMMAND...: poll until the command succeeds
  local deadline=$((SECONDS + $1)); shift
  until "$@" >/dev/null 2>&1; do
    [ "$SECONDS" -lt "$deadline" ] || return 1
    sleep 0.1
  done
}

broker_port=$(free_port)
printf 'listener %s 127.0.0.1\nallow_anonymous true\npersistence false\nuser %s\n' "$broker_port" "$(id -un)" > "$work/mosquitto.conf"
/usr/sbin/mosquitto -c "$work/mosquitto.conf" 2>"$work/mosquitto.log" &
pids+=($!)
wait_for 10 bash -c "echo > /dev/tcp/127.0.0.1/$broker_port"

sed 's/127.0.0.1:1502/127.0.0.1:0/' device-models/thermostat/sim.yaml > "$work/sim.yaml"
target/release/modbus-sim --map "$work/sim.yaml" --log warn >"$work/sim.out" 2>"$work/sim.log" &
pids+=($!)
wait_for 10 grep -q '^ready' "$work/sim.out"
sim_port=$(sed -n 's/.*tcp=127.0.0.1:\([0-9]*\).*/\1/p' "$work/sim.out" | head -1)


echo "broker 127.0.0.1:$broker_port   simulator 127.0.0.1:$sim_port   profile device-models/thermostat/profile.json"
echo "live twin view (* marks values that changed):"
# Two tracked processes, no pipeline, so that every one of them is stopped at the end.
mosquitto_sub -h 127.0.0.1 -p "$broker_port" -v \
  -t '$hw/events/device/+/twin/update' -t '$hw/events/device/+/state/update' \
  -t '$hw/events/device/+/twin/update/delta' -t 'demo/probe' > "$work/view.raw" &
pids+=($!)
python3 -u scripts/twin_view.py "$work/view.raw" &
pids+=($!)
# The view is ready once it sees its own probe message.
probe() { mosquitto_pub -h 127.0.0.1 -p "$broker_port" -t demo/probe -m ready && grep -q '^demo/probe' "$work/view.raw"; }
wait_for 10 probe

mkdir -p "$work/kubeedge"
sed "s/\"port\": 1502/\"port\": $sim_port/" device-models/thermostat/profile.json > "$work/kubeedge/deviceProfile.json"
target/release/modbus-mapper --mqtt-address "tcp://127.0.0.1:$broker_port" \
  --profile "$work/kubeedge/deviceProfile.json" --log-level warn 2>"$work/mapper.log" &
pids+=($!)

register() { mbpoll -m tcp -p "$sim_port" -a 1 -r 10 -c 1 -t 4 -0 -1 127.0.0.1 | sed -n 's/^\[10\]:[[:space:]]*\(-\{0,1\}[0-9]*\).*/\1/p'; }
wait_for 20 grep -q '"setpoint":{"actual":{"value":"20"' "$work/view.raw" || { echo "no report from the mapper"; cat "$work/mapper.log"; exit 1; }
echo "--- holding register 10 (setpoint x 10) before: $(register)"
echo "--- sending desired setpoint 23.5 as a twin delta"
mosquitto_pub -h 127.0.0.1 -p "$broker_port" -t '$hw/events/device/thermostat/twin/update/delta' \
  -m '{"event_id":"demo","timestamp":0,"twin":{"setpoint":{"expected":{"value":"23.5"},"metadata":{"type":"float"}}},"delta":{"setpoint":"23.5"}}'
wait_for 20 grep -q '"setpoint":{"actual":{"value":"23.5"' "$work/view.raw" || { echo "the desired value was not reported back"; cat "$work/mapper.log"; exit 1; }
after=$(register)
echo "--- holding register 10 after: $after"
[ "$after" = "235" ] || { echo "register holds $after, expected 235"; exit 1; }
if $smoke; then
  echo "demo smoke test passed"
  exit 0
fi
echo "--- running; ctrl-c stops everything"
wait "${pids[-1]}"
