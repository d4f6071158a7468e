"""scc's strict JSON reader: RFC 8259 and nothing more, with positions."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scc.errors import ReadError
from scc.limits import LIMITS, CompilerLimits
from scc.reader import join_pointer, read


def _error(source: bytes, limits: CompilerLimits = LIMITS):
    with pytest.raises(ReadError) as info:
        read(source, limits)
    return info.value.diagnostics


def test_values_positions_and_key_order():
    text = '{\n  "b": [1, 2.5, -0, 1e2],\n  "a/~x": {"z": true, "y": null},\n  "é": "ü\\n"\n}'
    doc = read(text.encode())
    assert list(doc.value) == ["b", "a/~x", "é"]
    assert list(doc.value["a/~x"]) == ["z", "y"]
    assert doc.value["b"] == [1, 2.5, 0.0, 100.0]
    assert isinstance(doc.value["b"][0], int) and isinstance(doc.value["b"][3], float)
    assert math.copysign(1.0, doc.value["b"][2]) == -1.0  # "-0" is the double -0
    assert doc.value["é"] == "ü\n"
    assert doc.position("/b/1") == (2, 12)
    assert doc.position("/a~1~0x/y") == (3, 28)
    assert doc.position("/%C3%A9") == (1, 1)  # not a pointer in this document: the root
    assert doc.position("/a~1~0x/missing") == (3, 11)  # nearest existing ancestor
    assert doc.position("/\u00e9") == (4, 8)  # columns count characters, not bytes


def test_big_integers_become_doubles():
    doc = read(b"[9007199254740991, 9007199254740993, -9007199254740992]")
    assert doc.value[0] == 2**53 - 1 and isinstance(doc.value[0], int)
    assert doc.value[1] == 9007199254740992.0 and isinstance(doc.value[1], float)
    assert isinstance(doc.value[2], float)


@pytest.mark.parametrize(("source", "code", "pointer", "line", "column", "words"), [
    (b'{"a": 1,\n "a": 2}', "SCC-E004", "/a", 2, 2, "appears twice"),
    (b'{"a": [1, NaN]}', "SCC-E005", "/a/1", 1, 11, "NaN"),
    (b'{"a": Infinity}', "SCC-E005", "/a", 1, 7, "Infinity"),
    (b'[-Infinity]', "SCC-E005", "/0", 1, 2, "-Infinity"),
    (b'{"a": 1e309}', "SCC-E006", "/a", 1, 7, "too large"),
    (b'[-' + b"9" * 400 + b"]", "SCC-E006", "/0", 1, 2, "too large"),
    (b'{} {}', "SCC-E007", "", 1, 4, "after the end"),
    (b'{"a": "\\udc00"}', "SCC-E009", "/a", 1, 7, "surrogate"),
    (b'{"a": 1,}', "SCC-E003", "", 1, 9, "trailing comma"),
    (b'[1,]', "SCC-E003", "/1", 1, 4, "trailing comma"),
    (b"{'a': 1}", "SCC-E003", "", 1, 2, "double quotes"),
    (b'{"a" 1}', "SCC-E003", "/a", 1, 6, "expected `:`"),
    (b'{"a": 01}', "SCC-E003", "/a", 1, 7, "malformed number"),
    (b'{"a": .5}', "SCC-E003", "/a", 1, 7, "expected a value"),
    (b'{"a": +1}', "SCC-E003", "/a", 1, 7, "expected a value"),
    (b'{"a": "x\ty"}', "SCC-E003", "/a", 1, 9, "control character"),
    (b'{"a": "x', "SCC-E003", "/a", 1, 7, "never closed"),
    (b'{"a": "\\q"}', "SCC-E003", "/a", 1, 8, "escape"),
    (b'{"a": tru}', "SCC-E003", "/a", 1, 7, "expected a value"),
    (b'[1 2]', "SCC-E003", "/0", 1, 4, "expected `,` or `]`"),
    (b"", "SCC-E003", "", 1, 1, "end of the file"),
    (b"\xef\xbb\xbf{}", "SCC-E003", "", 1, 1, "byte-order mark"),
    (b'{"a":\n  "\xc3("}', "SCC-E002", "", 2, 4, "not valid UTF-8"),
])
def test_errors_are_located(source, code, pointer, line, column, words):
    (d,) = _error(source)
    assert (d.code, d.pointer, d.line, d.column) == (code, pointer, line, column), d
    assert words in d.message


def test_every_duplicate_and_nonfinite_is_reported():
    diagnostics = _error(b'{"a": 1, "a": NaN, "b": {"c": 1, "c": 1e999}}')
    assert [(d.code, d.pointer) for d in diagnostics] == [
        ("SCC-E004", "/a"), ("SCC-E005", "/a"), ("SCC-E004", "/b/c"), ("SCC-E006", "/b/c")]


def test_size_limit_is_checked_before_parsing():
    limits = CompilerLimits(max_source_bytes=10)
    assert read(b"[1,2,3,4]", limits).value == [1, 2, 3, 4]  # 9 bytes
    (d,) = _error(b"[1,2,3,4,5]", limits)
    assert d.code == "SCC-E001" and "11 bytes" in d.message


def test_nesting_limit():
    limits = CompilerLimits(max_json_depth=3)
    assert read(b"[[[]]]", limits).value == [[[]]]
    (d,) = _error(b'[[{"a": []}]]', limits)
    assert (d.code, d.pointer) == ("SCC-E008", "/0/0/a")
    deep = b"[" * 100_000 + b"]" * 100_000  # would overflow a recursive parser
    assert _error(deep)[0].code == "SCC-E008"


def test_pointer_escaping():
    assert join_pointer("", "a/b", "~c", 0) == "/a~1b/~0c/0"


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53) + 1, 2**53 - 1)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=5), children, max_size=4),
    max_leaves=20,
)


@settings(max_examples=150, deadline=None)
@given(json_values, st.booleans())
def test_agrees_with_json_on_standard_documents(value, indent):
    text = json.dumps(value, indent=1 if indent else None, ensure_ascii=False)
    doc = read(text.encode("utf-8"))
    assert json.dumps(doc.value) == json.dumps(json.loads(text))
    for pointer, offset in doc.offsets.items():
        assert 0 <= offset < len(text)
        assert doc.position(pointer)[0] >= 1
