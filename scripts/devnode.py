"""`scripts/dev up`: a development node from nothing, with the project's own commands, then `synapse serve`.

In DIR (default .dev/): dev keys (a ledger root at LVL_5, an author at LVL_4, the node at LVL_1 so it
can anchor its decision log), a local ledger, every bundled policy packaged, registered and verified,
a node config with an admin token for the operator page, and `synapse serve` on 127.0.0.1. Once the
server listens it prints the page's address and a `curl` that gets a decision.

Safe to run twice: what exists is kept (keys, ledger, registrations), and an artifact is packaged
again only when `scc rebuild` does not confirm it comes from the policy file as it is now, and
registered only when the ledger does not hold its URN. Each step is the command a person would type
(`scc keygen`, `axon ledger init`, `scc package`, `axon ledger register-artifact`, `axon verify`), run
in this process through the commands' own `main`. Dev keys are for this machine
only: they are written unencrypted (mode 0600).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import signal
import subprocess
import sys
import threading
from pathlib import Path

from axon import strictjson
from axon.cli import main as axon_main
from axon.envelope import ArtifactEnvelope
from axon.keys import load_identity
from axon.ledger import Ledger
from scc.cli import main as scc_main
from synapse.service.auth import hash_token, new_token

REPO = Path(__file__).resolve().parent.parent
POLICIES = sorted(p for p in (REPO / "policies").glob("*.json") if not p.name.endswith(".test.json"))
KEYS = (("root", "dev-root", None), ("author", "dev-author", "LVL_4"), ("node", "dev-node", "LVL_1"))
EXAMPLE = {"policy": "boiler-guard", "telemetry": {"pressure_bar": 97.5, "valve_open": True},
           "context": {"mode": "AUTO"}}


class SetupFailed(Exception):
    pass


def step(tool: str, *args: str | Path) -> None:
    """One command, as typed (printed first); SetupFailed when it does not exit 0."""
    argv = [str(a) for a in args]
    print(f"$ {tool} {shlex.join(argv)}", flush=True)
    status = (scc_main if tool == "scc" else axon_main)(argv)
    if status != 0:
        raise SetupFailed(f"`{tool} {shlex.join(argv)}` exited {status}")


def prepare(directory: Path, port: int) -> tuple[Path, list[Path]]:
    """Everything `synapse serve` needs in `directory`: its config file and the artifacts to load."""
    keys = directory / "keys"
    keys.mkdir(parents=True, exist_ok=True)
    for name, did_name, _ in KEYS:
        if not (keys / f"{name}.key").exists():
            step("scc", "keygen", "-o", keys / f"{name}.key", "--name", did_name)
    ledger = directory / "ledger.db"
    if not ledger.exists():
        step("axon", "ledger", "init", "--ledger", ledger, "--root-key", keys / "root.key")
    for name, _, level in KEYS:
        who = load_identity(keys / f"{name}.key")
        with Ledger.open(ledger) as opened:
            known = opened.key(who.did) is not None
        if level is not None and not known:
            step("axon", "ledger", "register-key", "--ledger", ledger, "--key", keys / "root.key",
                 "--did", who.did, "--public-key", who.key.public_key.hex(), "--level", level)
    artifacts = directory / "artifacts"
    artifacts.mkdir(exist_ok=True)
    sops = []
    for policy in POLICIES:
        sop = artifacts / (policy.stem + ".sop")
        if not (sop.exists() and _rebuilds(sop, policy, ledger)):
            sop.unlink(missing_ok=True)
            step("scc", "package", policy, "--key", keys / "author.key", "-o", sop, "--ledger", ledger)
        # The URN names the module, so packaging an unchanged policy again gives a URN already registered.
        with Ledger.open(ledger) as opened:
            registered = opened.artifact(_urn(sop)) is not None
        if not registered:
            step("axon", "ledger", "register-artifact", "--ledger", ledger, "--key", keys / "author.key",
                 "--sop", sop)
        step("axon", "verify", sop, "--ledger", ledger)
        sops.append(sop)
    return _config(directory, ledger, keys / "node.key", port), sops


def _urn(sop: Path) -> str:
    return ArtifactEnvelope.parse(strictjson.loads(sop.read_bytes())).urn


def _rebuilds(sop: Path, policy: Path, ledger: Path) -> bool:
    with open(os.devnull, "w") as quiet, contextlib.redirect_stdout(quiet), contextlib.redirect_stderr(quiet):
        return scc_main(["rebuild", str(sop), str(policy), "--ledger", str(ledger)]) == 0


def _config(directory: Path, ledger: Path, node_key: Path, port: int) -> Path:
    """The node's config; its admin token (for the page's retire, rollback, unpin) in admin.token."""
    token_file = directory / "admin.token"
    if not token_file.exists():
        token_file.write_text(new_token() + "\n")
        token_file.chmod(0o600)
    token = token_file.read_text().strip()
    config = directory / "node.toml"
    config.write_text(
        "# Written by scripts/dev up (development only). Options: docs/service.md\n"
        f'[server]\nhost = "127.0.0.1"\nport = {port}\n\n'
        f"[ledger]\npath = {json.dumps(str(ledger))}\nfollow_interval = 2.0\n\n"
        f"[node]\nkey = {json.dumps(str(node_key))}\n\n"
        f"[store]\npath = {json.dumps(str(directory / 'store'))}\n\n"
        f"[decision_log]\npath = {json.dumps(str(directory / 'decisions'))}\n\n"
        "[auth]\nopen_evaluate = true\n\n"
        f'[[auth.tokens]]\nname = "dev-admin"\nsha256 = "{hash_token(token)}"\nscopes = ["admin"]\n')
    return config


def serve(config: Path, sops: list[Path], directory: Path) -> int:
    """`synapse serve` in a child process; its log goes on to stderr, and once it listens the page's
    address and a `curl` are printed. SIGINT/SIGTERM are passed on; its exit status is returned."""
    argv = [sys.executable, "-m", "synapse", "serve", "--config", str(config)]
    argv += [a for sop in sops for a in ("--artifact", str(sop))]
    print(f"$ {shlex.join(argv[2:])}", flush=True)
    child = subprocess.Popen(argv, stderr=subprocess.PIPE)
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda signum, _frame: child.send_signal(signum))
    relay = threading.Thread(target=_relay, args=(child, directory), daemon=True)
    relay.start()
    status = child.wait()
    relay.join(timeout=5)
    return status


def _relay(child: subprocess.Popen, directory: Path) -> None:
    """Pass the server's log on; once it has started, say where it listens."""
    if child.stderr is None:
        return
    port = None
    for raw in child.stderr:
        sys.stderr.buffer.write(raw)
        sys.stderr.flush()
        try:
            event = strictjson.loads(raw)
        except strictjson.JsonError:
            continue
        if not isinstance(event, dict):
            continue
        if event.get("event") == "listening":
            port = event.get("port")
        elif event.get("event") == "service_started" and isinstance(port, int):
            print_ready(directory, port)


def print_ready(directory: Path, port: int) -> None:
    base = f"http://127.0.0.1:{port}"
    curl = (f"curl -s {base}/v1/evaluate -H 'Content-Type: application/json' "
            f"-d '{json.dumps(EXAMPLE, separators=(',', ':'))}'")
    print(f"\nready. The operator page: {base}/ui  (admin token for its buttons: "
          f"{directory / 'admin.token'})\nA decision (HALT: the boiler is at 97.5 bar):\n\n  {curl}\n",
          flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/dev up", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dir", type=Path, default=REPO / ".dev",
                        help="where the node lives (default .dev/)")
    parser.add_argument("--port", type=int, default=8080,
                        help="port on 127.0.0.1 (default 8080; 0: any free)")
    parser.add_argument("--prepare-only", action="store_true", help="set up, print the serve command, exit")
    args = parser.parse_args(argv)
    directory = args.dir.resolve()
    try:
        config, sops = prepare(directory, args.port)
    except SetupFailed as exc:
        print(f"scripts/dev up: {exc}", file=sys.stderr)
        return 1
    if args.prepare_only:
        print(f"prepared {directory}; serve with: synapse serve --config {config} "
              + " ".join(f"--artifact {sop}" for sop in sops))
        return 0
    return serve(config, sops, directory)


if __name__ == "__main__":
    raise SystemExit(main())
