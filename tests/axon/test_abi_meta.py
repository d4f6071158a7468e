"""axon.abi.read_meta: the `sopcos.meta` custom section of a policy module."""

from __future__ import annotations

import json

import pytest
import rfc8785

from axon import abi
from scc.compiler import compile_policy
from tests.scc_policies import SPEC_EXAMPLE, dumps


@pytest.fixture(scope="module")
def compiled():
    return compile_policy(dumps(SPEC_EXAMPLE))


def _without_meta(wasm: bytes, meta_json: bytes) -> bytes:
    tail = abi.custom_section(abi.META_SECTION, meta_json)
    assert wasm.endswith(tail)
    return wasm[: -len(tail)]


def test_reads_the_compilers_section(compiled):
    meta = abi.read_meta(compiled.wasm)
    assert meta.policy == "boiler-guard" and meta.gas_max == compiled.gas_max
    assert meta.rules[0] == {"id": "halt-overpressure", "then": "HALT"}


def test_a_large_section_uses_a_multi_byte_length(compiled):
    bare = _without_meta(compiled.wasm, compiled.meta_json)
    big = dict(compiled.meta, sites=[f"/rules/{i}/when" for i in range(3000)])
    meta = abi.read_meta(bare + abi.custom_section(abi.META_SECTION, rfc8785.dumps(big)))
    assert meta.sites[-1] == "/rules/2999/when"


@pytest.mark.parametrize(("mutate", "words"), [
    (lambda bare, meta: bare, "no 'sopcos.meta'"),
    (lambda bare, meta: bare + abi.custom_section(abi.META_SECTION, meta) * 2, "2 'sopcos.meta'"),
    (lambda bare, meta: bare + abi.custom_section(abi.META_SECTION, b"{not json"), "not strict JSON"),
    (lambda bare, meta: bare + abi.custom_section(abi.META_SECTION, b'{"abi": 1}'), "malformed"),
    (lambda bare, meta: bare + abi.custom_section(abi.META_SECTION, b"[]"), "malformed"),
    (lambda bare, meta: bare + abi.custom_section(abi.META_SECTION, b'{"abi":1,"abi":1}'), "appears twice"),
    (lambda bare, meta: bare + abi.custom_section(abi.META_SECTION, meta.replace(b'"abi":1', b'"abi":2')),
     "ABI version 2"),
    (lambda bare, meta: (bare + abi.custom_section(abi.META_SECTION, meta))[:-5], "truncated"),
    (lambda bare, meta: b"\x00asm\x02\x00\x00\x00" + bare[8:], "not a WebAssembly module"),
    (lambda bare, meta: bare + b"\x00\xff\xff\xff\xff\xff", "longer than 5 bytes"),
])
def test_refuses_what_it_cannot_trust(compiled, mutate, words):
    bare = _without_meta(compiled.wasm, compiled.meta_json)
    with pytest.raises(abi.ModuleMetaError) as info:
        abi.read_meta(mutate(bare, compiled.meta_json))
    assert words in str(info.value) and info.value.code == "AXON-ABI-META"


def test_other_custom_sections_are_ignored(compiled):
    bare = _without_meta(compiled.wasm, compiled.meta_json)
    wasm = bare + abi.custom_section("other", b"x") + abi.custom_section(abi.META_SECTION, compiled.meta_json)
    assert abi.read_meta(wasm) == abi.read_meta(compiled.wasm)
    assert abi.read_custom_sections(wasm, "other") == [b"x"]
    assert json.loads(abi.read_custom_sections(wasm, abi.META_SECTION)[0]) == compiled.meta
