"""The one switch (axon/accelerators.py): SOPCOS_ACCELERATORS=off turns every accelerator off, each
path it switches then takes the reference, and decisions and readings stay the same. Each case runs in
a fresh interpreter, since the switch is read once, at import."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from axon import accelerators

ROOT = Path(__file__).resolve().parents[2]
ALL = ["c-api", "pybase64", "jsonschema-rs", "strictjson-fast", "messaging-fast"]

# What the accelerated paths would use: each is replaced by a tripwire, so that a run with the switch
# off shows that none of them is reached (and the reference paths still answer).
PROBE = """
import json, sys
from axon import accelerators, envelope, strictjson
from axon.messaging import envelope as messaging

def tripwire(*_args, **_kwargs):
    raise AssertionError("an accelerated path was taken")

if not accelerators.ENABLED:
    strictjson._fast = messaging.fast_path_accepts = tripwire
from synapse.evaluate import Evaluator
from tests.synapse_wat import boiler, boiler_inputs

decision = Evaluator.from_wasm(boiler()).evaluate(*boiler_inputs(99))
print(json.dumps({
    "enabled": accelerators.ENABLED,
    "in_use": list(accelerators.IN_USE),
    "envelope": [envelope.BASE64_DECODER, list(envelope.ACCELERATORS)],
    "capi_imported": "synapse._capi" in sys.modules,
    "instances": type(Evaluator.from_wasm(boiler())._instances).__name__,
    "decision": [decision.verdict.name, decision.rule, decision.gas_used],
    "reading": strictjson.loads(b'{"a": [1, 2.5, "x"]}'),
}))
"""


def probe(value: str | None) -> dict:
    env = {k: v for k, v in os.environ.items() if k != accelerators.ENV_VAR}
    if value is not None:
        env[accelerators.ENV_VAR] = value
    done = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


ON = {"enabled": True, "in_use": ALL, "envelope": ["pybase64", ["pybase64", "jsonschema-rs"]],
      "capi_imported": True, "instances": "FreshInstances"}
OFF = {"enabled": False, "in_use": [], "envelope": ["binascii", []], "capi_imported": False,
       "instances": "PublicInstances"}
SAME = {"decision": ["HALT", "halt-overpressure", 10], "reading": {"a": [1, 2.5, "x"]}}


@pytest.mark.slow
@pytest.mark.parametrize(("value", "expected"), [
    (None, ON), ("", ON), ("on", ON), (" ON ", ON), ("1", ON),
    ("off", OFF), ("OFF", OFF), ("0", OFF), ("false", OFF), ("of", OFF),  # an unknown value: the reference
])
def test_one_setting_turns_every_accelerator_off(value, expected):
    assert probe(value) == {**expected, **SAME}


def test_a_missing_optional_package_is_simply_not_used(monkeypatch):
    monkeypatch.setitem(sys.modules, "no_such_accelerator", None)  # import raises ImportError
    assert accelerators._optional("no_such_accelerator") is None
    assert accelerators.compiled_schema({"type": "object"}) is not None  # jsonschema-rs is installed here
    monkeypatch.setattr(accelerators, "jsonschema_rs", None)
    assert accelerators.compiled_schema({"type": "object"}) is None
    assert accelerators.known_valid(None, {}) is False
