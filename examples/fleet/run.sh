#!/usr/bin/env bash
# A fleet on one laptop: an Ethereum dev chain (anvil), a Mosquitto broker and three Synapse sidecars
# (`synapse run`), each with its own store, its own index of the one ledger on the chain, its own
# telemetry feed, and SIP-017 over MQTT: alerts out to an operator, commands in from the office
# (docs/fleet.md, "Try it").
#
#   examples/fleet/run.sh            set up, start, show each node deciding, then wait (Ctrl-C stops all)
#   examples/fleet/run.sh --demo     also: an alert reaching the operator's console, pings from the
#                                    office answered, the broker going away and coming back, the chain
#                                    going away and coming back, a revocation from the office while node-3
#                                    is stopped, node-3 catching up; then stop everything
#
# Needs the repository's venv (. .venv/bin/activate), anvil (on PATH, or .tools/ as .ci/run installs it)
# and mosquitto (on PATH or /usr/sbin; ANVIL and MOSQUITTO name other binaries); without either it says
# what to install and exits 2. Ports: ANVIL_PORT (8545), MQTT_PORT (1883), NODE_PORT (8081; the nodes
# take 8081..8083). Everything it makes goes to WORK (a new temporary directory unless set); it stops
# everything it started when it ends (done, failed, Ctrl-C or SIGTERM).
set -euo pipefail

REPO=$(cd "$(dirname "$0")/../.." && pwd)
ANVIL_PORT=${ANVIL_PORT:-8545}
MQTT_PORT=${MQTT_PORT:-1883}
NODE_PORT=${NODE_PORT:-8081}
CHAIN=http://127.0.0.1:$ANVIL_PORT
BROKER=mqtt://127.0.0.1:$MQTT_PORT
ANVIL=${ANVIL:-$(command -v anvil || echo "$REPO/.tools/node_modules/.bin/anvil")}
MOSQUITTO=${MOSQUITTO:-$(command -v mosquitto || echo /usr/sbin/mosquitto)}
DEMO=${1:-}
PIDS=()

[ -x "$ANVIL" ] || { echo "anvil is missing: npm install --prefix $REPO/.tools @foundry-rs/anvil@1.7.1" >&2; exit 2; }
[ -x "$MOSQUITTO" ] || { echo "mosquitto is missing: apt-get install mosquitto (or brew install mosquitto)" >&2; exit 2; }
command -v synapse > /dev/null || { echo "synapse is not on PATH: . $REPO/.venv/bin/activate" >&2; exit 2; }
WORK=${WORK:-$(mktemp -d -t sopcos-fleet-XXXXXX)}

say() { printf '\n\033[1m== [%3ss] %s\033[0m\n' "$SECONDS" "$*"; }
stop_all() {  # on any exit: SIGTERM to what is still running (each stops cleanly), then wait for it
  [ -z "${ANVIL_PID:-}" ] || stop_chain
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  say "stopped everything this script started"
}
trap stop_all EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
forget() { kill "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }  # stop one of ours, now
stop_chain() {  # npm's anvil is a wrapper that passes SIGTERM on to the real anvil and dies at once,
  # before it has reaped it: stopping its child first lets the wrapper reap it and exit on its own.
  pkill -TERM -P "$ANVIL_PID" 2>/dev/null || true
  for _ in $(seq 1 50); do kill -0 "$ANVIL_PID" 2>/dev/null || break; sleep 0.1; done
  forget "$ANVIL_PID"
}
fund() {  # dev balances for gas (anvil_setBalance), through the project's JSON-RPC client (web3.py)
  python -c "import sys; from axon.ledger.chain import EthereumChain
chain = EthereumChain(sys.argv[1])
for address in sys.argv[2:]: chain.request('anvil_setBalance', [address, hex(1000 * 10**18)])" "$CHAIN" "$@"
}
wait_http() { for _ in $(seq 1 300); do curl -s -o /dev/null "$1" && return 0; sleep 0.2; done
              echo "nothing answers at $1" >&2; return 1; }
wait_for() {  # wait_for FILE PATTERN [COUNT]: until FILE has COUNT (1) lines matching PATTERN (60 s at most)
  for _ in $(seq 1 300); do
    [ "$(grep -c -- "$2" "$1" 2>/dev/null || true)" -ge "${3:-1}" ] && return 0; sleep 0.2
  done
  echo "timed out waiting for '$2' in $1" >&2; return 1
}
field() { python -c "import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])" "$1" "$2"; }
address() { field "$1" address; }
public_key() { field "$1" public_key; }
events() {  # events NODE EVENT...: the node's log lines for those events, one short line each
  python - "node-$1/serve.log" "${@:2}" <<'EOF'
import json, sys
skip = {"time", "level", "logger", "event", "worker", "path"}  # the rest, code first
for line in open(sys.argv[1], errors="replace"):
    try:
        e = json.loads(line)
    except ValueError:
        continue
    if isinstance(e, dict) and e.get("event") in sys.argv[2:]:
        rest = " ".join(f"{k}={v}" for k, v in sorted(e.items(), key=lambda kv: kv[0] != "code")
                        if k not in skip)
        print(f"  {sys.argv[1].split('/')[0]}: {e['event']} {rest}"[:170])
EOF
}
decide() {  # decide NODE_PORT: the node's verdict for a normal boiler reading, or its refusal
  curl -s -X POST "http://127.0.0.1:$1/v1/evaluate" -H 'Content-Type: application/json' \
    -d '{"policy":"boiler-guard","telemetry":{"pressure_bar":50,"temp_c":20,"valve_open":false},"context":{"mode":"AUTO"}}' \
    | python -c "import json,sys; d=json.load(sys.stdin); print(d.get('verdict') or d.get('code'), '-', (d.get('version') or d.get('message'))[:90])"
}
fleet() { for i in 1 2 3; do port=$((NODE_PORT + i - 1)); printf '  node-%s: ' "$i"
          if curl -s -o /dev/null "http://127.0.0.1:$port/healthz"; then decide "$port"; else echo "(stopped)"; fi; done; }
reading() {  # reading NODE PRESSURE_BAR: one line on the node's telemetry feed (the sidecar decides on it)
  printf '{"telemetry":{"pressure_bar":%s,"temp_c":20,"valve_open":false},"context":{"mode":"AUTO"}}\n' "$2" \
    >> "node-$1/feed.jsonl"
}
decisions() {  # decisions NODE: the verdicts the sidecar logged for its feed, in order
  python - "node-$1" <<'EOF'
import json, pathlib, sys
verdicts = []
for path in sorted(pathlib.Path(sys.argv[1], "decisions").glob("*.jsonl")):
    for line in path.read_text().splitlines():
        record = json.loads(line)
        if record.get("kind") == "decision" and record.get("source") == "sidecar":
            verdicts.append(record["verdict"])
print(f"  {sys.argv[1]}: sidecar decisions {' '.join(verdicts) or '(none)'}")
EOF
}
console() {  # console FILE: what a console (axon msg watch) printed, shortened
  cut -c1-170 "$1" | sed 's/^/  | /'
}

cd "$WORK"
say "work directory: $WORK"

start_chain() {  # its state is kept in chain-state.json across a stop (anvil --state)
  "$ANVIL" --port "$ANVIL_PORT" --chain-id 7317 --block-time 1 --state chain-state.json --silent \
    >> anvil.log 2>&1 &
  ANVIL_PID=$!
  PIDS+=("$ANVIL_PID")
  wait_http "$CHAIN"
}
say "the chain: anvil on $CHAIN (a block every second, chain id 7317)"
start_chain

# persistence: sessions (the nodes' subscriptions, the consoles') and the QoS 1 messages waiting in them
# survive a broker restart. Plain MQTT on localhost here; a plant uses TLS and passwords (docs/messaging.md).
cat > mosquitto.conf <<EOF
listener $MQTT_PORT 127.0.0.1
allow_anonymous true
persistence true
persistence_location $WORK/
user $(id -un)
EOF
start_broker() {
  "$MOSQUITTO" -c mosquitto.conf >> mosquitto.log 2>&1 &
  BROKER_PID=$!
  PIDS+=("$BROKER_PID")
  for _ in $(seq 1 100); do (: < "/dev/tcp/127.0.0.1/$MQTT_PORT") 2>/dev/null && return 0; sleep 0.1; done
  echo "mosquitto did not start: $(tail -3 mosquitto.log)" >&2; return 1
}
say "the broker: mosquitto on $BROKER (SIP-017 over MQTT: docs/messaging.md)"
start_broker

say "keys: the root, an author (LVL_4, the office), an operator (LVL_1), three nodes (LVL_1); dev balances"
KEYGENS=()
for who in root author operator node-1 node-2 node-3; do scc keygen -o "$who.key" --name "$who" > /dev/null & KEYGENS+=($!); done
for pid in "${KEYGENS[@]}"; do wait "$pid"; done
fund $(for who in root author operator node-1 node-2 node-3; do address "$who.key"; done)
# Packaging needs only the author's key: it runs while the keys are registered on the chain.
scc package "$REPO/policies/boiler-guard.json" --key author.key --kid 'did:sopcos:author#key-1' -o boiler.sop \
  > package.out &
PACKAGE_PID=$!
export SOPCOS_LEDGER=$CHAIN SOPCOS_LEDGER_INDEX=$WORK/office-index.sqlite
axon ledger init --root-key root.key
axon ledger register-key --key root.key --did 'did:sopcos:author#key-1' --public-key "$(public_key author.key)" --level LVL_4
axon ledger register-key --key root.key --did 'did:sopcos:operator#key-1' --public-key "$(public_key operator.key)" --level LVL_1
for i in 1 2 3; do
  axon ledger register-key --key root.key --did "did:sopcos:node-$i#key-1" --public-key "$(public_key node-$i.key)" --level LVL_1
done

say "the office packages and registers boiler-guard"
wait "$PACKAGE_PID"; cat package.out
axon ledger register-artifact --key author.key --sop boiler.sop
URN=$(python -c "import json; print(json.load(open('boiler.sop'))['meta']['urn'])")
sleep 2  # the registration gets its one confirmation (a block a second) before the nodes load it

say "three sidecars (synapse run): own store and index (confirmations 1, follow every second), own feed,"
echo "   alerts to the operator and commands from the office through the broker ([mqtt])"
for i in 1 2 3; do
  mkdir -p "node-$i"
  : > "node-$i/feed.jsonl"
  cat > "node-$i/sidecar.toml" <<EOF
[server]
port = $((NODE_PORT + i - 1))
[ledger]
path = "$CHAIN"
confirmations = 1
follow_interval = 1.0
[node]
key = "../node-$i.key"
[store]
path = "store"
[decision_log]
path = "decisions"
[auth]
open_evaluate = true
[sidecar]
artifacts = ["../boiler.sop"]
source = "feed.jsonl"
interval = 0          # decide on every feed line as it arrives
policies = ["boiler-guard"]
[sidecar.alerts]
recipients = ["did:sopcos:operator#key-1"]
[mqtt]
host = "127.0.0.1"
port = $MQTT_PORT
reconnect_max = 1.0
EOF
done
launch_node() {
  (cd "node-$1" && exec synapse run --config sidecar.toml 2>> serve.log) &
  PIDS+=($!)
  eval "NODE_PID_$1=$!"
}
# The consoles: each reads its own topic (sopcos/v1/to/<its address>) and checks every message against
# its own index of the ledger. Persistent sessions: nothing is lost while the broker (or a console) is away.
watch_console() {  # watch_console WHO: `axon msg watch` in the background, printing to WHO-console.log
  SOPCOS_LEDGER_INDEX=$WORK/$1-index.sqlite axon msg watch --key "$1.key" --broker "$BROKER" \
    --client-id "console-$1" > "$1-console.log" 2> "$1-console.err" &
  PIDS+=($!)
}
for i in 1 2 3; do launch_node "$i"; done
watch_console operator
watch_console author
for i in 1 2 3; do wait_http "http://127.0.0.1:$((NODE_PORT + i - 1))/readyz"; wait_for "node-$i/serve.log" mqtt_connected; done
fleet
say "consoles: the operator and the office watch their topics (axon msg watch --broker $BROKER)"
for who in operator author; do wait_for "$who-console.err" watching; cat "$who-console.err"; done


if [ "$DEMO" != "--demo" ]; then
  say "running; the operator's console prints to $WORK/operator-console.log. Try:"
  echo "   echo '{\"telemetry\":{\"pressure_bar\":99,\"temp_c\":20,\"valve_open\":false},\"context\":{\"mode\":\"AUTO\"}}' >> $WORK/node-1/feed.jsonl"
  echo "   axon msg send --broker $BROKER --key $WORK/author.key --to 'did:sopcos:node-2#key-1' --type CMD --body '{\"command\":\"ping\"}'"
  echo "   axon ledger revoke-artifact --key $WORK/author.key --urn $URN --reason recalled"
  echo "   (with SOPCOS_LEDGER=$CHAIN SOPCOS_LEDGER_INDEX=$SOPCOS_LEDGER_INDEX); Ctrl-C stops everything"
  wait
fi

say "an alert: node-1's feed reads 99 bar; it decides HALT and the operator's console gets the ALERT"
reading 1 50
reading 1 99
wait_for operator-console.log "ALERT from did:sopcos:node-1"
decisions 1
console operator-console.log

say "the office pings node-1 and node-2 through the broker (axon msg send --broker); each answers"
for i in 1 2; do
  axon msg send --broker "$BROKER" --key author.key --to "did:sopcos:node-$i#key-1" --type CMD \
    --body "{\"command\":\"ping\",\"echo\":\"office to node-$i\"}"
done
wait_for author-console.log '"command":"ping"' 2
console author-console.log

say "the broker goes away: node-2 goes on deciding on its feed (ALLOW, then HALT); the alert waits"
forget "$BROKER_PID"
wait_for node-2/serve.log mqtt_disconnected
reading 2 50
reading 2 99
wait_for node-2/serve.log alert_queued
decisions 2
events 2 mqtt_disconnected alert_queued
fleet

say "the broker comes back: node-2 reconnects and sends the alert it held; the operator's console gets it"
start_broker
wait_for operator-console.log "ALERT from did:sopcos:node-2"
events 2 mqtt_connected alert | tail -2
console operator-console.log | tail -1

say "the chain goes away: every node keeps serving what it verified, and logs ledger_chain_unavailable"
stop_chain
for i in 1 2 3; do wait_for "node-$i/serve.log" ledger_chain_unavailable; done
fleet
for i in 1 2 3; do events "$i" ledger_chain_unavailable; done
axon ledger status || true

say "the chain comes back (same state): the nodes follow it again (ledger_chain_back)"
start_chain
for i in 1 2 3; do wait_for "node-$i/serve.log" ledger_chain_back; done
for i in 1 2 3; do events "$i" ledger_chain_back; done

say "node-3 goes away; the office revokes boiler-guard on the chain: node-1 and node-2 stop serving it"
forget "$NODE_PID_3"
axon ledger revoke-artifact --key author.key --urn "$URN" --reason "recalled from the office"
for i in 1 2; do wait_for "node-$i/serve.log" artifact_revoked; done
for i in 1 2; do events "$i" artifact_revoked; done
fleet

say "the office pings node-3 while it is away: the broker keeps the command in node-3's session"
axon msg send --broker "$BROKER" --key author.key --to 'did:sopcos:node-3#key-1' --type CMD \
  --body '{"command":"ping","echo":"while you were away"}'

say "node-3 comes back on its own store: it catches up from the chain (boiler-guard revoked), then answers"
launch_node 3
wait_http "http://127.0.0.1:$((NODE_PORT + 2))/readyz"
wait_for author-console.log "while you were away"
events 3 artifact_preload_failed artifact_revoked
console author-console.log | tail -1
fleet
reading 3 50
wait_for node-3/serve.log sidecar_not_evaluated
events 3 sidecar_not_evaluated

say "done; logs, stores and decision logs are in $WORK"
