#!/usr/bin/env bash
# A fleet on one laptop: an Ethereum dev chain (anvil), Mosquitto when installed, and three Synapse
# nodes, each with its own store and its own index of the one ledger on the chain (docs/fleet.md).
#
#   examples/fleet/run.sh            set up, start, show each node deciding, then wait (Ctrl-C stops all)
#   examples/fleet/run.sh --demo     also revoke from the "office", stop a node, bring it back, stop the
#                                    chain, and show what each node does; then stop everything
#
# Needs the repository's venv (. .venv/bin/activate) and anvil (on PATH, or .tools/ as .ci/run installs
# it). Ports: ANVIL_PORT (8545), MQTT_PORT (1883), NODE_PORT (8081; the nodes take 8081..8083).
# Everything it makes goes to WORK (a new temporary directory unless set); it stops what it started.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/../.." && pwd)
WORK=${WORK:-$(mktemp -d -t sopcos-fleet-XXXXXX)}
ANVIL_PORT=${ANVIL_PORT:-8545}
MQTT_PORT=${MQTT_PORT:-1883}
NODE_PORT=${NODE_PORT:-8081}
CHAIN=http://127.0.0.1:$ANVIL_PORT
ANVIL=$(command -v anvil || echo "$REPO/.tools/node_modules/.bin/anvil")
DEMO=${1:-}
PIDS=()

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
stop_all() { for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap stop_all EXIT
fund() {  # a dev balance for gas (anvil_setBalance), through the project's JSON-RPC client (web3.py)
  python -c "import sys; from axon.ledger.chain import EthereumChain
EthereumChain(sys.argv[1]).request('anvil_setBalance', [sys.argv[2], hex(1000 * 10**18)])" "$CHAIN" "$1"
}
wait_http() { for _ in $(seq 1 100); do curl -s -o /dev/null "$1" && return 0; sleep 0.2; done
              echo "nothing answers at $1" >&2; return 1; }
address() { python -c "import json,sys; print(json.load(open(sys.argv[1]))['address'])" "$1"; }
public_key() { python -c "import json,sys; print(json.load(open(sys.argv[1]))['public_key'])" "$1"; }
decide() {  # decide NODE_PORT: the node's verdict for a normal boiler reading, or its refusal
  curl -s -X POST "http://127.0.0.1:$1/v1/evaluate" -H 'Content-Type: application/json' \
    -d '{"policy":"boiler-guard","telemetry":{"pressure_bar":50,"temp_c":20,"valve_open":false},"context":{"mode":"AUTO"}}' \
    | python -c "import json,sys; d=json.load(sys.stdin); print(d.get('verdict') or d.get('code'), '-', (d.get('version') or d.get('message'))[:90])"
}
fleet() { for i in 1 2 3; do port=$((NODE_PORT + i - 1)); printf '  node-%s: ' "$i"
          if curl -s -o /dev/null "http://127.0.0.1:$port/healthz"; then decide "$port"; else echo "(stopped)"; fi; done; }

[ -x "$ANVIL" ] || { echo "anvil is missing: npm install --prefix $REPO/.tools @foundry-rs/anvil@1.7.1" >&2; exit 2; }
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

if command -v mosquitto > /dev/null; then
  say "the broker: mosquitto on 127.0.0.1:$MQTT_PORT (SIP-017 over MQTT: docs/fleet.md, 'Messages over MQTT')"
  mosquitto -p "$MQTT_PORT" > mosquitto.log 2>&1 &
  PIDS+=($!)
else
  say "mosquitto is not installed: the nodes run without a broker"
fi

say "keys: the root, an author (LVL_4), three nodes (LVL_1); dev balances for gas (anvil_setBalance)"
for who in root author node-1 node-2 node-3; do
  scc keygen -o "$who.key" --name "$who" > /dev/null
  fund "$(address "$who.key")"
done
export SOPCOS_LEDGER=$CHAIN SOPCOS_LEDGER_INDEX=$WORK/office-index.sqlite
axon ledger init --root-key root.key
axon ledger register-key --key root.key --did 'did:sopcos:author#key-1' --public-key "$(public_key author.key)" --level LVL_4
for i in 1 2 3; do
  axon ledger register-key --key root.key --did "did:sopcos:node-$i#key-1" --public-key "$(public_key node-$i.key)" --level LVL_1
done

say "the office packages and registers boiler-guard"
scc package "$REPO/policies/boiler-guard.json" --key author.key --kid 'did:sopcos:author#key-1' -o boiler.sop
axon ledger register-artifact --key author.key --sop boiler.sop
URN=$(python -c "import json; print(json.load(open('boiler.sop'))['meta']['urn'])")
sleep 2  # the registration gets its one confirmation (a block a second) before the nodes load it

say "three nodes, each following the chain into its own index (confirmations 1, follow every second)"
for i in 1 2 3; do
  mkdir -p "node-$i"
  cat > "node-$i/service.toml" <<EOF
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
EOF
done
start_node() {
  (cd "node-$1" && exec synapse serve --config service.toml --artifact ../boiler.sop 2> serve.log) &
  PIDS+=($!)
  eval "NODE_PID_$1=$!"
  wait_http "http://127.0.0.1:$((NODE_PORT + $1 - 1))/healthz"
}
for i in 1 2 3; do start_node "$i"; done
sleep 2
fleet
axon ledger status

if [ "$DEMO" != "--demo" ]; then
  say "running; try: axon ledger revoke-artifact --key $WORK/author.key --urn $URN --reason recalled"
  echo "   (with SOPCOS_LEDGER=$CHAIN SOPCOS_LEDGER_INDEX=$SOPCOS_LEDGER_INDEX); Ctrl-C stops everything"
  wait
fi

say "the chain goes away: every node keeps serving what it verified, and logs ledger_chain_unavailable"
kill "$ANVIL_PID"; wait "$ANVIL_PID" 2>/dev/null || true
sleep 2
fleet
grep -h ledger_chain_unavailable node-*/serve.log | head -3 | cut -c1-160
axon ledger status || true

say "the chain comes back (same state): the nodes follow it again (ledger_chain_back)"
start_chain
sleep 3
grep -h ledger_chain_back node-*/serve.log | head -3 | cut -c1-160
fleet

say "node-3 goes away; the office revokes boiler-guard on the chain"
kill "$NODE_PID_3"; wait "$NODE_PID_3" 2>/dev/null || true
axon ledger revoke-artifact --key author.key --urn "$URN" --reason "recalled from the office"
sleep 3  # follow interval (1 s) + one confirmation (a block a second) + a follow step
fleet

say "node-3 comes back on its own store: it catches up from the chain before serving"
start_node 3
sleep 2
fleet

say "done; logs and stores are in $WORK"
