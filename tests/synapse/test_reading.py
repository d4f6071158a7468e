"""One reading (issue 14): `synapse eval --input`, the sidecar's feed and the REST API accept and refuse
the same documents, because all three read them with synapse.inputs.Reading. Each entry point is the
real one: `synapse eval` and `synapse run` (its feed on stdin, its REST API on a loopback port) run as
processes, and every row of the table goes through each."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from scc.compiler import compile_policy
from synapse.inputs import MAX_INPUT_NAME, MAX_READING_INPUTS, MAX_TEXT, Reading, ReadingInvalid
from tests.service_support import AUTO, NORMAL, REPO, Plant, Server, decisions, sidecar_config
from tests.waiting import wait_until

pytestmark = pytest.mark.slow

P = {"policy": "boiler-guard"}


def line(doc: dict) -> bytes:
    return json.dumps(doc).encode()


# (name, the document as bytes, accepted?)
TABLE: list[tuple[str, bytes, bool]] = [
    ("full", line({**P, "telemetry": NORMAL, "context": AUTO}), True),
    ("no context", line({**P, "telemetry": NORMAL}), True),
    ("undeclared inputs and colons in strings", line({**P, "telemetry": {**NORMAL, "note": "a:b"},
                                                       "context": {**AUTO, "x": 1.5}}), True),
    ("longest name and text", line({**P, "telemetry": {**NORMAL, "n" * MAX_INPUT_NAME: "t" * MAX_TEXT},
                                    "context": AUTO}), True),
    ("repeated telemetry key", b'{"policy": "boiler-guard", "telemetry": {"pressure_bar": 50, "temp_c": 20, '
                               b'"valve_open": false, "pressure_bar": 99}, "context": {"mode": "AUTO"}}',
     False),
    ("repeated member", b'{"policy": "boiler-guard", "telemetry": {}, "telemetry": {"pressure_bar": 50, '
                        b'"temp_c": 20, "valve_open": false}}', False),
    ("bare telemetry", line({**P, **NORMAL}), False),
    ("unknown member", line({**P, "telemetry": NORMAL, "extra": 1}), False),
    ("no telemetry", line({**P, "context": AUTO}), False),
    ("telemetry not an object", line({**P, "telemetry": [1]}), False),
    ("null value", line({**P, "telemetry": {**NORMAL, "x": None}}), False),
    ("object value", line({**P, "telemetry": NORMAL, "context": {"mode": {"v": "AUTO"}}}), False),
    ("array value", line({**P, "telemetry": {**NORMAL, "x": [1]}}), False),
    ("text too long", line({**P, "telemetry": {**NORMAL, "x": "t" * (MAX_TEXT + 1)}}), False),
    ("name too long", line({**P, "telemetry": {**NORMAL, "n" * (MAX_INPUT_NAME + 1): 1}}), False),
    ("empty name", line({**P, "telemetry": {**NORMAL, "": 1}}), False),
    ("too many inputs", line({**P, "telemetry": {f"k{i}": i for i in range(MAX_READING_INPUTS + 1)}}), False),
    ("NaN", b'{"policy": "boiler-guard", "telemetry": {"pressure_bar": NaN}}', False),
    ("overflow", b'{"policy": "boiler-guard", "telemetry": {"pressure_bar": 1e400}}', False),
    ("policy empty", line({"policy": "", "telemetry": NORMAL}), False),
    ("policy not a string", line({"policy": 7, "telemetry": NORMAL}), False),
    ("not JSON", b'{"policy": "boiler-guard", "telemetry": {', False),
    ("not an object", b'["boiler-guard"]', False),
    ("not UTF-8", b'{"policy": "boiler-guard", "telemetry": {"\xff": 1}}', False),
    ("text after the document", line({**P, "telemetry": NORMAL}) + b" {}", False),
]
IDS = [name for name, _, _ in TABLE]


@pytest.mark.parametrize(("name", "raw", "accepted"), TABLE, ids=IDS)
def test_the_parser(name, raw, accepted):
    if accepted:
        reading = Reading.parse(raw, need_policy=True)
        assert reading.policy == "boiler-guard" and reading.telemetry["pressure_bar"] == 50
    else:
        with pytest.raises(ReadingInvalid):
            Reading.parse(raw)


@pytest.fixture(scope="module")
def eval_verdicts(tmp_path_factory) -> list[str | None]:
    """`synapse eval --input -` on the table, one line each: per line the reason ('' when evaluated)."""
    work = tmp_path_factory.mktemp("eval")
    module = work / "boiler-guard.wasm"
    module.write_bytes(compile_policy((REPO / "policies" / "boiler-guard.json").read_bytes()).wasm)
    result = subprocess.run([sys.executable, "-m", "synapse", "eval", str(module), "--input", "-"],
                            input=b"\n".join(raw for _, raw, _ in TABLE) + b"\n", capture_output=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    return [json.loads(out)["reason"] or "" for out in result.stdout.splitlines()]


@pytest.fixture(scope="module")
def sidecar(tmp_path_factory):
    """`synapse run` with its feed on stdin (every line decided at once) and its REST API."""
    plant = Plant(tmp_path_factory.mktemp("sidecar"))
    sop, _ = plant.artifact("1.0.0")
    (plant.dir / "boiler.sop").write_bytes(sop)
    cfg = sidecar_config(plant, plant.dir / "boiler.sop", source="-", interval=0.0)
    server = Server(plant.dir, cfg, command="run", stdin=subprocess.PIPE).wait_ready()
    server.proc.stdin.write(b"\n".join(raw for _, raw, _ in TABLE) + b"\n")
    server.proc.stdin.flush()

    def fed() -> dict[int, str] | None:
        refused = {e["line"]: e["reason"] for e in server.events() if e.get("event") == "feed_line_invalid"}
        return refused if len(refused) + len(decisions(plant)) >= len(TABLE) else None

    refused = wait_until(fed, 60, "every feed line decided or refused")
    yield server, refused
    server.stop()


@pytest.mark.parametrize(("index", "name", "raw", "accepted"),
                         [(i, *row) for i, row in enumerate(TABLE)], ids=IDS)
def test_every_entry_point_agrees(eval_verdicts, sidecar, index, name, raw, accepted):
    server, feed_refused = sidecar
    lineno = index + 1
    eval_refused = eval_verdicts[index].startswith(f"line {lineno}: ")
    response = server.client.post("/v1/evaluate", content=raw, headers={"Content-Type": "application/json"})
    assert response.status_code in (200, 400, 422), response.text
    rest_refused = response.status_code != 200
    assert (eval_refused, lineno in feed_refused, rest_refused) == (not accepted,) * 3, (
        eval_verdicts[index], feed_refused.get(lineno), response.text)
    if not accepted:  # the same reason, word for word, from the one parser
        reason = str(_refusal(raw))
        with_newline = raw + b"\n"  # eval reads each line with its newline
        assert eval_verdicts[index] == f"line {lineno}: {_refusal(with_newline)}"
        assert feed_refused[lineno] == reason
        assert reason.endswith(response.json()["errors"][0]["message"])


def _refusal(raw: bytes) -> ReadingInvalid:
    with pytest.raises(ReadingInvalid) as info:
        Reading.parse(raw)
    return info.value
