"""What the everyday commands import when they start (issue 15): only what the command uses.

`scc check`, `scc compile` and `synapse eval` of a raw module run in a policy CI pipeline once per
policy, so their start-up is the pipeline's cost. Each runs here as a real process under
`python -X importtime`, and the modules it imported are checked against the heavy libraries it never
needs (the ledger's Ethereum stack, key handling, the HTTP service, the plant drivers, the
analyser's solver). An assertion on what is imported, not a timing: `benchmarks/run.py` times them.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from axon import keys
from scc import cli as scc_cli
from synapse import artifacts
from synapse import cli as synapse_cli
from synapse.sandbox import Limits
from synapse.service.config import LimitsConfig

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
BOILER = ROOT / "policies" / "boiler-guard.json"

# Top-level packages none of the three commands may import at all.
NEVER = {
    "eth_utils", "eth_hash", "eth_typing", "eth_keys", "eth_account", "web3", "rlp",  # the ledger's Ethereum
    "Crypto", "coincurve", "cryptography", "pkcs11",  # keys and artifact encryption
    "fastapi", "starlette", "uvicorn", "httpx", "prometheus_client", "pydantic",  # the service, its config
    "z3", "pymodbus", "asyncua", "aiomqtt", "paho",  # the analyser, the plant and MQTT
    "jsonschema",  # the reference validator: only for documents that are not valid
}
# Standard-library modules none of the three needs: `secrets` (hashlib, hmac, random) only named a
# temporary file (axon/clikit.py), and ctypes.util with subprocess only found libc for the hardening
# that a raw module never uses (synapse/hardening.py).
NEVER_MODULES = {"secrets", "subprocess", "ctypes.util"}


def _imported(*args: str) -> tuple[subprocess.CompletedProcess, set[str]]:
    """Run `python -X importtime ARGS` in the repository; (the process, top-level packages it imported).
    Asserts that it imported none of NEVER_MODULES."""
    done = subprocess.run([sys.executable, "-X", "importtime", *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=120, check=False)
    modules = {line.rsplit("|", 1)[1].strip()
               for line in done.stderr.splitlines() if line.startswith("import time:") and "|" in line}
    names = {module.split(".")[0] for module in modules}
    assert "scc" in names or "synapse" in names, done.stderr[-2000:]  # importtime's output was read
    assert modules & NEVER_MODULES == set()
    return done, names


def test_scc_check_imports_neither_the_heavy_libraries_nor_wasmtime():
    done, names = _imported("-m", "scc", "check", str(BOILER))
    assert done.returncode == 0 and "valid" in done.stderr, done.stderr[-2000:]
    assert names & NEVER == set()
    assert "wasmtime" not in names  # checking compiles nothing


def test_scc_compile_imports_none_of_the_heavy_libraries(tmp_path):
    out = tmp_path / "boiler.wasm"
    done, names = _imported("-m", "scc", "compile", str(BOILER), "-o", str(out))
    assert done.returncode == 0 and out.read_bytes()[:4] == b"\0asm", done.stderr[-2000:]
    assert names & NEVER == set()


def test_synapse_eval_of_a_raw_module_imports_none_of_the_heavy_libraries(tmp_path):
    module = tmp_path / "boiler.wasm"
    assert scc_cli.main(["compile", str(BOILER), "-o", str(module)]) == 0
    done, names = _imported("-m", "synapse", "eval", str(module), "--telemetry",
                            '{"pressure_bar": 97.5, "valve_open": true}', "--context", '{"mode": "AUTO"}')
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout)["verdict"] == "HALT"
    assert names & NEVER == set()


@pytest.mark.parametrize("commands", [scc_cli.COMMANDS, synapse_cli.COMMANDS])
def test_each_command_module_is_named_after_its_command(commands):
    """axon.clikit.run_cli imports only the module named after the command being run: a module that
    registered another name would make its command unreachable."""
    for name in commands:
        parser = argparse.ArgumentParser()
        sub = parser.add_subparsers()
        importlib.import_module(name).register(sub)
        assert list(sub.choices) == [name.rsplit(".", 1)[-1]], name


def test_what_synapse_eval_of_a_raw_module_assumes_without_reading_settings():
    """Without a config file or a limit flag, `synapse eval X.wasm` skips the node's settings: the
    defaults it then uses must be the settings' own, and the key variable the one axon.keys reads."""
    assert Limits.deadline_ms == LimitsConfig().eval_timeout_ms
    assert artifacts.KEY_ENV == keys.KEY_ENV


def test_a_command_run_in_process_leaves_the_collector_as_it_was():
    """run_cli pauses the cyclic collector while a command's modules load and freezes what they made only
    for the process's own command line (argv None): a caller passing argv (a test, a script) keeps its
    collector as it had it, and none of its objects become permanent."""
    frozen = gc.get_freeze_count()
    assert scc_cli.main(["check", str(BOILER)]) == 0
    assert gc.isenabled() and gc.get_freeze_count() == frozen
    gc.disable()
    try:
        assert scc_cli.main(["check", str(BOILER)]) == 0
        assert not gc.isenabled()
    finally:
        gc.enable()
    assert gc.get_freeze_count() == frozen
