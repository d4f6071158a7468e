"""Test support for the service: a small plant (ledger, keys, real compiled and signed artifacts) and a
real `synapse serve` / `synapse run` process on a free loopback port."""

from __future__ import annotations

import atexit
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from axon import envelope
from axon.artifact_crypto import RecipientKey, Recipients
from axon.keys import Identity, SigningKey, write_key_file
from axon.ledger import Ledger, ops
from scc.compiler import compile_policy
from synapse.service.auth import hash_token

REPO = Path(__file__).resolve().parent.parent
BOILER = json.loads((REPO / "policies" / "boiler-guard.json").read_text())
NORMAL = {"pressure_bar": 50, "temp_c": 20, "valve_open": False}
AUTO = {"mode": "AUTO"}
HALT = {**NORMAL, "pressure_bar": 99}


def identity(name: str) -> Identity:
    return Identity(SigningKey.generate(), f"did:sopcos:{name}#key-1")


class Plant:
    """A ledger with a root, an author (LVL_4), an administrator (LVL_4), an operator (LVL_2) and this
    node (LVL_1, so it can post alerts), and the node's key file."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.ledger_path = directory / "ledger.db"
        self.root = identity("root")
        self.author = identity("author")
        self.admin = identity("admin")
        self.operator = identity("operator")
        self.node = identity("node")
        self.node_key = directory / "node.key"
        write_key_file(self.node_key, self.node.key, self.node.did)
        with Ledger.init(self.ledger_path, self.root) as ledger:
            for who, level in ((self.author, "LVL_4"), (self.admin, "LVL_4"), (self.operator, "LVL_2"),
                               (self.node, "LVL_1")):
                op = ops.register_key(who.did, who.key.public_key, level)
                ledger.sign_and_submit(self.root, op, self.now)

    @property
    def now(self) -> int:
        return int(time.time())

    def artifact(self, version: str = "1.0.0", *, policy: str = "boiler-guard", register: bool = True,
                 encrypted: bool = False, expires_at: int | None = None,
                 doc: dict | None = None) -> tuple[bytes, str]:
        """A compiled, signed (and registered) boiler-guard artifact: (sop bytes, urn)."""
        source = dict(doc or BOILER, policy=policy, version=version)
        wasm = compile_policy(json.dumps(source).encode()).wasm
        recipients = None
        if encrypted:
            recipients = Recipients("did:sopcos:group:plant", (RecipientKey(self.node.key.public_key,
                                                                            self.node.did),))
        spec = envelope.PackageSpec(authority_level="LVL_3", created_at=self.now - 10,
                                    expires_at=expires_at, encrypt_for=recipients)
        env = envelope.build(wasm, self.author, spec)
        if register:
            self.submit(self.author, ops.register_artifact(env.urn, policy, version, "LVL_3"))
        return env.to_bytes(), env.urn

    def submit(self, who: Identity, op: dict[str, Any]) -> None:
        with Ledger.open(self.ledger_path) as ledger:
            ledger.sign_and_submit(who, op, self.now)

    def revoke(self, urn: str, reason: str = "test") -> None:
        self.submit(self.author, ops.revoke_artifact(urn, reason))

    def supersede(self, urn: str, successor: str) -> None:
        self.submit(self.author, ops.supersede_artifact(urn, successor))


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str | Path):
        return json.dumps(str(value))
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(k)} = {toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(value)


def write_config(path: Path, sections: dict[str, dict[str, Any]], tokens: list[dict] | None = None) -> Path:
    lines = []
    for section, values in sections.items():
        lines.append(f"[{section}]")
        lines += [f"{k} = {toml_value(v)}" for k, v in values.items()]
    for tok in tokens or []:
        lines.append("[[auth.tokens]]")
        lines += [f"{k} = {toml_value(v)}" for k, v in tok.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def sidecar_config(plant: Plant, sop_path: Path, **sidecar: Any) -> Path:
    """A `synapse run` config for `plant` serving `sop_path`; `sidecar` holds the [sidecar] keys and the
    `alerts` / `commands` sub-sections."""
    sections = {
        "ledger": {"path": plant.ledger_path, "follow_interval": 0.5},
        "node": {"key": plant.node_key},
        "store": {"path": plant.dir / "store"},
        "decision_log": {"path": plant.dir / "decisions"},
        "auth": {"open_evaluate": True},
        "sidecar": {"artifacts": [sop_path],
                    **{k: v for k, v in sidecar.items() if k not in ("alerts", "commands")}},
    }
    for sub in ("alerts", "commands"):
        if sub in sidecar:
            sections[f"sidecar.{sub}"] = sidecar[sub]
    return write_config(plant.dir / "sidecar.toml", sections)


def records(plant: Plant) -> list[dict]:
    """Every record of the first worker's decision log, in order."""
    return [json.loads(line) for seg in sorted((plant.dir / "decisions").glob("w0-*.jsonl"))
            for line in seg.read_text().splitlines()]


def decisions(plant: Plant) -> list[dict]:
    """The decision records of `records(plant)`."""
    return [r for r in records(plant) if r["kind"] == "decision"]


_RUNNING: list[subprocess.Popen] = []


@atexit.register
def _stop_leftovers() -> None:
    """A test that failed before stopping its server must not leave the process behind."""
    for proc in _RUNNING:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


class Server:
    """`synapse serve|run --config ...` in a subprocess; stderr (JSON logs) goes to a file.

    The server picks its own port (--port 0) and the test reads it from the server's `listening` log
    line: a port chosen here and passed on could be taken by another process in between, and the
    readiness probe would then be answered by someone else's server."""

    def __init__(self, workdir: Path, config: Path, *, command: str = "serve", args: list[str] | None = None,
                 env: dict[str, str] | None = None, stdin: Any = None, nofile: int | None = None) -> None:
        """`nofile`: the server's RLIMIT_NOFILE (soft and hard), to show what happens at that limit."""
        self.workdir = workdir
        fd, name = tempfile.mkstemp(prefix="server-", suffix=".log", dir=workdir)
        self.stderr_path = Path(name)
        self._stderr = os.fdopen(fd, "wb")
        cmd = [sys.executable, "-m", "synapse", command, "--config", str(config), "--port", "0"]
        self.proc = subprocess.Popen(cmd + (args or []), cwd=workdir, stdout=subprocess.PIPE,
                                     stderr=self._stderr, stdin=stdin,
                                     env={**os.environ, **(env or {})},
                                     preexec_fn=None if nofile is None else lambda: resource.setrlimit(
                                         resource.RLIMIT_NOFILE, (nofile, nofile)))
        _RUNNING.append(self.proc)
        self.port = 0  # known once the server says where it listens (wait_ready)
        self.base = ""
        self._client: httpx.Client | None = None

    @property
    def client(self) -> httpx.Client:
        if self._client is None:
            raise RuntimeError("the server's port is known only after wait_ready()")
        return self._client

    def wait_ready(self, timeout: float = 60) -> Server:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}: {self.log()}")
            if self._client is None and (port := self._listening_port()):
                self.port, self.base = port, f"http://127.0.0.1:{port}"
                self._client = httpx.Client(base_url=self.base, timeout=30)
            try:
                if self._client is not None and self._client.get("/readyz").status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"server not ready after {timeout} s: {self.log()}")

    def _listening_port(self) -> int | None:
        return next((e["port"] for e in self.events() if e.get("event") == "listening"), None)

    def log(self) -> str:
        self._stderr.flush()
        return self.stderr_path.read_text(errors="replace")

    def events(self) -> list[dict]:
        out = []
        for line in self.log().splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                out.append({"raw": line})
        return out

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self._client is not None:
            self._client.close()
        if self.proc.returncode != 0 and sig == signal.SIGTERM:  # shown by pytest when the test fails
            print(f"server exited with {self.proc.returncode}; its log ends:\n{self.log()[-4000:]}")
        self._stderr.close()
        return self.proc.returncode


def serving_boiler_guard(plant: Plant, admin_token: str, sections: dict[str, dict[str, Any]] | None = None,
                         tokens: list[dict] | None = None) -> Iterator[Server]:
    """A `synapse serve` for `plant` (ledger followed every 0.3 s, store and decision log in its
    directory) holding boiler-guard 1.0.0, put there by `admin_token` (an "ops-admin" token with the
    admin scope), for a module fixture to `yield from`; the server stops when the fixture ends.
    `sections` adds config sections or keys to the default ones; `tokens` adds [[auth.tokens]]."""
    work = plant.dir
    config = {"ledger": {"path": plant.ledger_path, "follow_interval": 0.3},
              "node": {"key": plant.node_key},
              "store": {"path": work / "store"},
              "decision_log": {"path": work / "decisions"}}
    for section, values in (sections or {}).items():
        config[section] = {**config.get(section, {}), **values}
    admin = {"name": "ops-admin", "sha256": hash_token(admin_token), "scopes": ["admin"]}
    server = Server(work, write_config(work / "service.toml", config, tokens=[admin, *(tokens or [])]))
    try:
        server.wait_ready()
        sop, _ = plant.artifact("1.0.0")
        admin_header = {"Authorization": f"Bearer {admin_token}"}
        put = server.client.put("/v1/artifacts", content=sop, headers=admin_header)
        assert put.status_code == 201, put.text
        yield server
    finally:
        server.stop()
