#!/usr/bin/env bash
# The MQTT example end to end on loopback, in one command: Mosquitto with
# websockets, a keeper, a school, the behavior set, a timed run that prints
# its progress and report, then the broker's own counts to compare.
# Everything it starts is ended (by pid) when it exits.
#
#   examples/mqtt/run.sh                       # 100 koi for 40 s at time scale 10
#   KOI=500 DURATION=2m SCALE=1 examples/mqtt/run.sh
#
# Ports (change them if taken): WS_PORT 8083 (broker websockets), MQTT_PORT
# 1883 (broker plain MQTT), HTTP_PORT 8080 (keeper API and UI), NATS_PORT
# 4222 (keeper's embedded NATS).
set -euo pipefail
cd "$(dirname "$0")/../.."

KOI=${KOI:-100} DURATION=${DURATION:-40s} SCALE=${SCALE:-10}
WS_PORT=${WS_PORT:-8083} MQTT_PORT=${MQTT_PORT:-1883}
HTTP_PORT=${HTTP_PORT:-8080} NATS_PORT=${NATS_PORT:-4222}

mosquitto=$(command -v mosquitto || echo /usr/sbin/mosquitto)
if [ ! -x "$mosquitto" ]; then
  echo "run.sh: mosquitto not found: sudo apt-get install -y mosquitto" >&2
  exit 1
fi

work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

make --no-print-directory build >/dev/null
koipond=./bin/koipond
export KOIPOND_KEEPER=http://127.0.0.1:$HTTP_PORT

sed -e "s/^listener 8083 /listener $WS_PORT /" -e "s/^listener 1883 /listener $MQTT_PORT /" \
  examples/mqtt/mosquitto.conf >"$work/mosquitto.conf"
# stdbuf: the broker's stdout log is block-buffered on a file otherwise.
stdbuf -oL "$mosquitto" -c "$work/mosquitto.conf" >"$work/broker.log" 2>&1 &
pids+=($!)
"$koipond" keeper --http "127.0.0.1:$HTTP_PORT" --nats-listen "127.0.0.1:$NATS_PORT" --data "$work/data" \
  >"$work/keeper.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do
  if "$koipond" status >/dev/null 2>&1 && [ -f "$work/data/nats/school.nk" ]; then break; fi
  sleep 0.1
done
"$koipond" school --nats "nats://127.0.0.1:$NATS_PORT" --nats-nkey "$work/data/nats/school.nk" \
  >"$work/school.log" 2>&1 &
pids+=($!)

"$koipond" behaviors upload --name mqtt examples/mqtt/behaviors.json
status=0
"$koipond" run create --name mqtt --behaviors mqtt --koi "$KOI" --ramp 20 \
  --ws-url "ws://127.0.0.1:$WS_PORT/mqtt" --ws-subprotocol mqtt \
  --time-scale "$SCALE" --duration "$DURATION" --wait || status=$?

echo
echo "the broker's own counts (compare with the report's ws:chat, ws:presence, ws:ping):"
printf '  chat      %6d\n' "$(grep -c "Received PUBLISH.*'rooms/" "$work/broker.log" || true)"
printf '  presence  %6d\n' "$(grep -c "Received PUBLISH.*'presence/" "$work/broker.log" || true)"
printf '  ping      %6d\n' "$(grep -c "Received PINGREQ" "$work/broker.log" || true)"
exit "$status"
