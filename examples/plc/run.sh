#!/usr/bin/env bash
# The boiler guard in the loop, in one command: a signed artifact on a fresh ledger, the simulated PLC
# and OPC UA server, and `synapse run` deciding and writing back. Ctrl-C stops everything (the sidecar
# leaves the outputs at their safe values: watch the simulator's burner go off).
#
#   bash examples/plc/run.sh            (from the repository, with its virtualenv active)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
work="$here/work"
rm -rf "$work" && mkdir -p "$work"
cd "$work"

scc keygen -o root.key --name plant-root >/dev/null
scc keygen -o author.key --name author >/dev/null
scc keygen -o node.key --name boiler-node >/dev/null
pub() { python -c "import json,sys;print(json.load(open(sys.argv[1]))['public_key'])" "$1"; }
axon ledger init --ledger plant.ledger --root-key root.key >/dev/null
axon ledger register-key --ledger plant.ledger --key root.key --did 'did:sopcos:author#key-1' \
  --public-key "$(pub author.key)" --level LVL_4 >/dev/null
axon ledger register-key --ledger plant.ledger --key root.key --did 'did:sopcos:boiler-node#key-1' \
  --public-key "$(pub node.key)" --level LVL_1 >/dev/null
scc package "$repo/policies/boiler-guard.json" --key author.key --kid 'did:sopcos:author#key-1' -o boiler.sop >/dev/null
axon ledger register-artifact --ledger plant.ledger --key author.key --sop boiler.sop >/dev/null

# The simulator says when both its servers listen; the sidecar starts after that.
sidecar=""
python "$here/simulator.py" > >(tee "$work/simulator.out") &
simulator=$!
trap '[ -n "$sidecar" ] && kill $sidecar 2>/dev/null && wait $sidecar 2>/dev/null; kill $simulator 2>/dev/null' EXIT
for _ in $(seq 300); do
  grep -q '^simulator:' "$work/simulator.out" 2>/dev/null && break
  kill -0 $simulator 2>/dev/null || { echo "the simulator failed to start" >&2; exit 1; }
  sleep 0.1
done
synapse tags check "$here/sidecar.toml"
synapse run --config "$here/sidecar.toml" --port 0 2>"$work/sidecar.log" &
sidecar=$!
echo "sidecar running (log: $work/sidecar.log); Ctrl-C to stop"
wait $sidecar
