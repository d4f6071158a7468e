"""axon.strictjson: the one strict JSON reader (ledger ops, SIP-017 messages, constraint node, ABI meta,
.sop envelopes). Each refusal has a reason; nothing it is given crashes the process."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from axon import strictjson
from axon.errors import AxonError
from axon.strictjson import JsonError, loads


def refused(data: bytes | str, **options) -> JsonError:
    with pytest.raises(JsonError) as info:
        loads(data, **options)
    return info.value


def test_reads_what_json_writes():
    doc = {"a": [1, -2, 3.5, True, False, None, "é\u2028😀"], "b": {"c": {}}, "d": []}
    assert loads(json.dumps(doc)) == doc
    assert loads(json.dumps(doc).encode()) == doc
    assert loads(bytearray(json.dumps(doc).encode())) == doc


def test_errors_are_axon_errors_with_a_code():
    error = refused("{")
    assert isinstance(error, AxonError) and error.code == "AXON-JSON"


# -- what it refuses ---------------------------------------------------------------------------------


def test_duplicate_keys():
    error = refused('{"a": 1, "b": 2, "a": 3}')
    assert "'a' appears twice" in error.reason
    assert "twice" in refused('{"x": {"k": 1, "k": 1}}').reason  # also nested, also with equal values


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity(constant):
    assert refused(f'{{"n": {constant}}}').reason == f"{constant} is not a JSON number"


@pytest.mark.parametrize("number", ["1e999", "-1e999", "1.5e400"])
def test_numbers_that_overflow_to_infinity(number):
    reason = refused(f"[{number}]").reason
    assert "overflows to infinity" in reason and number.lstrip("-") not in reason  # may be a masked value


def test_long_integers_are_refused_not_a_crash():
    assert refused("[" + "9" * 5000 + "]").reason == "a number is too long to read"
    assert loads("[" + "9" * 4000 + "]") == [int("9" * 4000)]  # long, but within Python's limit


@pytest.mark.parametrize("text, column", [('{"a": 1} x', 10), ('{"a": 1}{}', 9), ("[1] [2]", 5), ("1 2", 3)])
def test_trailing_garbage(text, column):
    error = refused(text)
    assert error.reason == "unexpected text after the JSON document"
    assert (error.line, error.column) == (1, column)


@pytest.mark.parametrize("data, byte", [(b'{"a": "\xff"}', 7), (b'["\xc3"]', 2), (b'["\xed\xa0\x80"]', 2)])
def test_invalid_utf8(data, byte):
    assert refused(data).reason == f"not UTF-8 (byte {byte})"  # the last: a surrogate encoded as UTF-8


def test_byte_order_mark():
    assert "BOM" in refused(b"\xef\xbb\xbf{}").reason


def test_syntax_errors_say_where():
    error = refused('{\n  "a": 1,\n  "b": tru\n}')
    assert (error.line, error.column) == (3, 8)
    assert "line 3 column 8" in str(error)


# -- depth -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("limit", [0, 1, 4, 16, 64])
def test_depth_limit_is_exact(limit):
    deep = "[" * limit + "]" * limit
    assert loads(deep or "0", max_depth=limit) == json.loads(deep or "0")
    deeper = "[" * (limit + 1) + "]" * (limit + 1)
    assert refused(deeper, max_depth=limit).reason == f"nested deeper than {limit} levels"


def test_many_brackets_but_shallow_pass():
    """More brackets than the limit in all, each only one deep: the exact measure decides, not the count."""
    text = json.dumps([[i] for i in range(100)])
    assert loads(text, max_depth=2) == [[i] for i in range(100)]
    assert refused(text, max_depth=1).reason == "nested deeper than 1 levels"


def test_brackets_inside_strings_do_not_count():
    text = json.dumps({"s": "[[[[{{{{" * 50 + '\\"[{'})
    assert loads(text, max_depth=1) == json.loads(text)


def test_deep_nesting_is_refused_not_a_crash():
    for opener, closer in ("[]", "{}"):
        text = opener * 200_000 + closer * 200_000
        assert "nested deeper" in refused(text).reason


@settings(max_examples=60, deadline=None)
@given(st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=5),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner,
                                                                                max_size=3),
                    max_leaves=12))
def test_depth_matches_the_document(doc):
    def nesting(value) -> int:
        children = value.values() if isinstance(value, dict) else value if isinstance(value, list) else None
        return 0 if children is None else 1 + max(map(nesting, children), default=0)

    text, levels = json.dumps(doc), nesting(doc)
    assert strictjson.depth(text, 64) == levels
    assert loads(text, max_depth=levels) == doc
    if levels:
        assert refused(text, max_depth=levels - 1).reason == f"nested deeper than {levels - 1} levels"


# -- allow_floats=False ----------------------------------------------------------------------------


@pytest.mark.parametrize("number", ["12.0", "1.5", "-0.5", "1e3", "1E+3", "2e-1", "0.0", "1e999"])
def test_no_floats_on_request(number):
    text = f'{{"gas_max": {number}}}'
    assert refused(text, allow_floats=False).reason == f"the number {number} is not an integer"
    if number != "1e999":
        assert loads(text) == {"gas_max": float(number)}  # floats are allowed by default


def test_no_floats_still_reads_integers():
    assert loads('{"a": [0, -1, 12, 9007199254740993]}', allow_floats=False) == {
        "a": [0, -1, 12, 9007199254740993]}


def _standard(raw: bytes, allow_floats: bool = True):
    """The strict reading without the fast path: the standard parser with the strict hooks."""
    text = raw.decode("utf-8")
    return json.loads(text, object_pairs_hook=strictjson._no_duplicates,
                      parse_constant=strictjson._no_constant,
                      parse_float=strictjson._finite if allow_floats else strictjson._no_float)


@pytest.mark.parametrize("raw", [
    b'{"a": 1, "b": 2}',
    b'{"a": 1, "a": 2}',  # orjson keeps the last; one colon more than keys: read again, refused
    b'{"t": {"p": 1, "p": 2}}',
    b'[{"p": 1}, {"p": 1, "q": 2, "p": 3}]',
    b'{"policy": "urn:sopcos:x", "t": {}}',  # colons in a value: read again, accepted
    b'{"n": 18446744073709551616}',  # orjson: a float; strict: the integer
    b'{"n": -99999999999999999999999}',
    b'{"s": "\\ud800"}',  # orjson refuses a lone surrogate escape; the strict parser decides
    b'{"a": NaN}', b'{"a": 1e999}', b'{"a": 1} x', b'\xef\xbb\xbf{}',
])
@pytest.mark.parametrize("allow_floats", [True, False])
def test_the_fast_path_reads_as_the_strict_parser_does(raw, allow_floats):
    try:
        expected = _standard(raw, allow_floats)
    except (ValueError, UnicodeDecodeError):
        refused(raw, allow_floats=allow_floats)
        return
    got = loads(raw, allow_floats=allow_floats)
    assert got == expected and json.dumps(got) == json.dumps(expected)  # same types: 1 is not 1.0


@pytest.mark.slow
@given(st.recursive(st.none() | st.booleans() | st.integers()
                    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=8),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner,
                                                                                max_size=4),
                    max_leaves=20))
@settings(max_examples=300, deadline=None)
def test_fast_path_agrees_on_generated_documents(doc):
    raw = json.dumps(doc).encode()
    assert json.dumps(loads(raw)) == json.dumps(_standard(raw))


def test_every_other_json_reader_is_banned_outside_this_module(tmp_path):
    """issue 10: ruff (TID251, pyproject.toml) refuses json.loads & co. anywhere but axon/strictjson.py, so
    a new call site cannot read an untrusted document leniently; `ruff check` runs in CI."""
    repo = Path(__file__).resolve().parents[2]
    probe = tmp_path / "probe.py"
    probe.write_text("import json\nimport orjson\nfrom json import load\n\n"
                     "json.loads('1')\norjson.loads(b'1')\nload(open('x'))\njson.JSONDecoder()\n")
    found = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "--config",
                            str(repo / "pyproject.toml"), "--select", "TID251", "--output-format", "concise",
                            str(probe)], capture_output=True, text=True, timeout=60).stdout
    banned = {"json.loads", "orjson.loads", "json.load", "json.JSONDecoder"}
    assert {name for name in banned if f"`{name}` is banned" in found} == banned
    clean = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "--select", "TID251",
                            "axon", "synapse", "scc"], cwd=repo, capture_output=True, text=True, timeout=60)
    assert clean.returncode == 0, clean.stdout
