"""The constraint-node protocol (draft-urien-08): the draft's own example, eth-account interop, strict
message validation, fuzzing, and the CoAP and HTTP transports over real sockets/apps."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import json
import socket
from functools import partial

import aiocoap
import pytest
import rlp
from aiocoap.numbers import ContentFormat
from eth_account import Account
from eth_utils import to_checksum_address
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from axon import ethtx
from axon.cli import main as axon
from axon.constraint_node import (
    GWEI,
    MAX_PROVISIONING_BYTES,
    ConstraintNode,
    MalformedMessage,
    NodeReportedError,
    ProvisioningMessage,
    TransactionMessage,
    TransactionMismatch,
    attestation,
    decode_transaction,
    parse_transaction_message,
)
from axon.errors import AxonError
from axon.keys import SigningKey
from axon.transports import coap_node
from synapse.api.constraint import PATH, make_router

# draft-urien-core-blockchain-transaction-protocol-08 §3.2.1, exactly as printed (wrapped lines and all).
DRAFT_TX_HEX = """F8740C8506FC23AC0083013880946BAC1B75185D9051AF740AB909F81C71BBB221A
6808F54656D70657261747572653D3235431BA0A9B58980F76EE6284800B82A2B5DF
13E456887EC0CF426A5E5D6A738EB1784EDA0629633C6A3ED5FEE0FB40E2D1CF2513
45B885D372857B1A6C4762C9BE914281F"""
DRAFT_TX = bytes.fromhex("".join(DRAFT_TX_HEX.split()))
DRAFT_TXID = "0xd6904d832462ae17718c69e9caa0c3f3bed458382ac1f4e43b1aadd8e94744ad"
# §3.1.1
DRAFT_PROVISIONING = {"type": 1, "nonce": 12, "gasPrice": 30, "gasLimit": 80000,
                      "address": "6BAC1B75185D9051AF740AB909F81C71BBB221A6", "value": 0}

NODE_KEY = SigningKey(hashlib.sha256(b"constraint node 7").digest())
JSON_BODY = {"Content-Type": "application/json"}


# --- the draft's example ----------------------------------------------------------------------------------


def test_draft_example_transaction_message_decodes_to_its_txid_and_sender() -> None:
    assert len(DRAFT_TX) == 118  # "whose total length is 118 bytes"
    result = parse_transaction_message(json.dumps({"type": 1, "transaction": "".join(DRAFT_TX_HEX.split())}))
    assert result.tx_hash == DRAFT_TXID
    assert result.sender == Account.recover_transaction(DRAFT_TX).lower()
    tx = result.transaction
    assert (tx.nonce, tx.gas_price, tx.gas_limit, tx.value) == (12, 30 * GWEI, 80000, 0)
    assert tx.to.hex().upper() == DRAFT_PROVISIONING["address"]
    assert result.data == b"Temperature=25C" and result.chain_id is None and tx.v == 27
    assert result.to_dict()["data_text"] == "Temperature=25C"


def test_draft_provisioning_message_is_the_context_of_the_draft_transaction() -> None:
    """gasPrice 30 in the provisioning JSON is the 30 GWei (0x06FC23AC00) of the §2.2 transaction."""
    msg = ProvisioningMessage.parse(json.dumps(DRAFT_PROVISIONING))
    assert msg.gas_price_wei == 0x06FC23AC00
    decode_transaction(DRAFT_TX).check_matches(msg)
    assert ProvisioningMessage.parse(msg.to_json()) == msg and msg.to_dict() == DRAFT_PROVISIONING
    # The same context and data, signed by the draft's (unknown) key or ours, differ only in v, r, s.
    reply = ConstraintNode(NODE_KEY).handle_provisioning(msg, b"Temperature=25C", None)
    ours = ethtx.decode(reply.transaction)
    theirs = ethtx.decode(DRAFT_TX)
    assert (ours.nonce, ours.gas_price, ours.gas_limit, ours.to, ours.value, ours.data) == \
           (theirs.nonce, theirs.gas_price, theirs.gas_limit, theirs.to, theirs.value, theirs.data)


# --- round trips against eth-account --------------------------------------------------------------------


@pytest.mark.parametrize("chain_id", [None, 1, 4242, 2**53 - 1])
@pytest.mark.parametrize("data", [b"Temperature=25C", b"", bytes(range(256)),
                                  attestation({"verdict": "DENY", "policy": "boiler-guard", "seq": 7})])
def test_node_transactions_are_byte_identical_to_eth_account(chain_id: int | None, data: bytes) -> None:
    msg = ProvisioningMessage(nonce=5, gas_price_gwei=2, gas_limit=90_000, address=bytes.fromhex("11" * 20),
                              value=10**18)
    reply = ConstraintNode(NODE_KEY).handle_provisioning(msg, data, chain_id)
    fields = {"nonce": 5, "gasPrice": 2 * GWEI, "gas": 90_000, "to": to_checksum_address("0x" + "11" * 20),
              "value": 10**18, "data": data}
    if chain_id is not None:
        fields["chainId"] = chain_id
    expected = bytes(Account.sign_transaction(fields, NODE_KEY.secret_bytes()).raw_transaction)
    assert reply.transaction == expected
    parsed = parse_transaction_message(reply.to_json())
    assert parsed.sender == NODE_KEY.address == Account.recover_transaction(expected).lower()
    assert parsed.chain_id == chain_id and parsed.data == data and parsed.raw == expected
    parsed.check_matches(msg)


def test_attestation_is_canonical_json() -> None:
    assert attestation({"b": 1, "a": [True, None], "é": "x"}) == b'{"a":[true,null],"b":1,"\xc3\xa9":"x"}'


def test_mismatched_transaction_is_detected_by_the_controller() -> None:
    asked = ProvisioningMessage.parse(DRAFT_PROVISIONING)
    other = ProvisioningMessage(nonce=13, gas_price_gwei=30, gas_limit=80000, address=asked.address)
    reply = ConstraintNode(NODE_KEY).handle_provisioning(other, b"x", None)
    with pytest.raises(TransactionMismatch, match="nonce 13, not the provisioned 12"):
        parse_transaction_message(reply.to_json()).check_matches(asked)


# --- strict validation of provisioning messages ----------------------------------------------------------


def _with(**changes: object) -> dict:
    doc = dict(DRAFT_PROVISIONING)
    for key, value in changes.items():
        if value is _DROP:
            del doc[key]
        else:
            doc[key] = value
    return doc


_DROP = object()


@pytest.mark.parametrize(("body", "field", "reason"), [
    (_with(nonce=_DROP), "nonce", "missing field 'nonce'"),
    (_with(address=_DROP), "address", "missing field 'address'"),
    (_with(type=_DROP), "type", "missing field 'type'"),
    (_with(nonce=-1), "nonce", "must not be negative"),
    (_with(gasPrice=-30), "gasPrice", "must not be negative"),
    (_with(value=-1), "value", "must not be negative"),
    (_with(address="6BAC1B75185D9051AF740AB909F81C71BBB221A"), "address", "not 40 hex digits"),
    (_with(address="0x6BAC1B75185D9051AF740AB909F81C71BBB221AG"), "address", "not 40 hex digits"),
    (_with(address="6BAC1B75185D9051AF740AB909F81C71BBB221A6\n"), "address", "not 40 hex digits"),
    (_with(address=0x6BAC), "address", "must be a string, not an integer"),
    (_with(nonce="12"), "nonce", "must be an integer, not a string"),
    (_with(gasLimit=None), "gasLimit", "must be an integer, not null"),
    (_with(gasLimit=[80000]), "gasLimit", "must be an integer, not an array"),
    (_with(nonce=True), "nonce", "must be an integer, not a boolean"),
    (_with(value=False), "value", "must be an integer, not a boolean"),
    (_with(nonce=12.0), "nonce", "must be an integer, not a number"),
    (_with(gasPrice=30.5), "gasPrice", "must be an integer, not a number"),
    (_with(nonce=2**64), "nonce", "too large"),
    (_with(gasLimit=2**63), "gasLimit", "too large"),
    (_with(value=2**256), "value", "too large"),
    (_with(gasPrice=2**256 // GWEI + 1), "gasPrice", "too large"),
    (_with(type=2), "type", "unsupported message type 2"),
    (_with(type=0), "type", "unsupported message type 0"),
    (_with(data="Temperature=25C"), "data", "unknown field 'data'"),
])
def test_malformed_provisioning_messages_are_rejected_with_their_reason(body: dict, field: str,
                                                                         reason: str) -> None:
    for form in (body, json.dumps(body), json.dumps(body).encode()):
        with pytest.raises(MalformedMessage) as exc:
            ProvisioningMessage.parse(form)
        assert exc.value.field == field and reason in str(exc.value), str(exc.value)
        assert exc.value.code == "AXON-CN-MALFORMED"


@pytest.mark.parametrize(("body", "reason", "code"), [
    (b"", "not strict JSON: Expecting value at line 1 column 1", "AXON-CN-MALFORMED"),
    (b"\xff\xfe{}", "not UTF-8", "AXON-CN-MALFORMED"),
    (b"{'type': 1}", "not strict JSON: Expecting property name", "AXON-CN-MALFORMED"),
    (b"[1, 12]", "must be a JSON object, not an array", "AXON-CN-MALFORMED"),
    (b'{"type": 1, "nonce": NaN}', "NaN is not a JSON number", "AXON-CN-MALFORMED"),
    (b'{"type": 1, "type": 1}', "key 'type' appears twice", "AXON-CN-MALFORMED"),
    (json.dumps(DRAFT_PROVISIONING).encode() + b" " * MAX_PROVISIONING_BYTES, "the limit is 1024",
     "AXON-CN-OVERSIZE"),
    (b"[" * 600 + b"]" * 600, "1200 bytes; the limit is 1024", "AXON-CN-OVERSIZE"),
])
def test_unparseable_provisioning_messages(body: bytes, reason: str, code: str) -> None:
    with pytest.raises(MalformedMessage, match=reason) as exc:
        ProvisioningMessage.parse(body)
    assert exc.value.code == code


def test_0x_prefixed_and_lowercase_addresses_are_accepted() -> None:
    a = ProvisioningMessage.parse(_with(address="0x6bac1b75185d9051af740ab909f81c71bbb221a6"))
    assert a == ProvisioningMessage.parse(DRAFT_PROVISIONING)


def test_provisioning_messages_built_in_code_are_validated_too() -> None:
    with pytest.raises(MalformedMessage, match="nonce must not be negative"):
        ProvisioningMessage(nonce=-1, gas_price_gwei=1, gas_limit=1, address=bytes(20))
    with pytest.raises(MalformedMessage, match="address"):
        ProvisioningMessage(nonce=1, gas_price_gwei=1, gas_limit=1, address=bytes(19))


# --- node answers and the controller's parser -------------------------------------------------------------


def test_respond_turns_every_failure_into_a_type_0_message() -> None:
    node = ConstraintNode(NODE_KEY)
    ok = node.respond(json.dumps(DRAFT_PROVISIONING).encode(), lambda: b"Temperature=25C", 7)
    assert ok.type == 1 and not ok.is_error and parse_transaction_message(ok.to_json()).chain_id == 7

    bad = node.respond(b'{"type": 1}', lambda: b"x", None)
    assert bad.is_error and bad.client_error and bad.error["code"] == "AXON-CN-MALFORMED"
    assert "missing field" in bad.error["message"]

    def broken_sensor() -> bytes:
        raise OSError("/dev/i2c-1: secret internal path")

    failed = node.respond(json.dumps(DRAFT_PROVISIONING).encode(), broken_sensor, None)
    assert failed.is_error and not failed.client_error and failed.error["code"] == "AXON-CN-DATA"
    assert "i2c" not in failed.to_json().decode()
    too_big = node.respond(json.dumps(DRAFT_PROVISIONING).encode(), lambda: b"x" * (32 * 1024 + 1), None)
    assert too_big.error["code"] == "AXON-CN-DATA" and "limit" in too_big.error["message"]

    with pytest.raises(NodeReportedError, match=r"missing field 'nonce'.*\[AXON-CN-MALFORMED\]"):
        parse_transaction_message(bad.to_json())


@pytest.mark.parametrize(("body", "error", "match"), [
    ({"type": 1}, MalformedMessage, "missing field 'transaction'"),
    ('{"type": ' + "9" * 5000 + "}", MalformedMessage, "number is too long to read"),
    ("[" * 100_000 + "]" * 100_000, MalformedMessage, "nested deeper than"),
    ({"type": 1, "transaction": "ABC"}, MalformedMessage, "even number of hex digits"),
    ({"type": 1, "transaction": "ZZ"}, MalformedMessage, "even number of hex digits"),
    ({"type": 1, "transaction": 12}, MalformedMessage, "must be a string"),
    ({"type": 2, "transaction": "C0"}, MalformedMessage, "unsupported message type 2"),
    ({"type": 1, "transaction": "C0"}, ethtx.MalformedTransaction, "not a legacy RLP transaction"),
    ({"type": 1, "transaction": DRAFT_TX.hex() + "00"}, ethtx.MalformedTransaction, "trailing|legacy"),
    ({"type": 0}, NodeReportedError, "no detail given"),
    ({"type": 0, "error": {"code": "X", "message": "sensor offline"}}, NodeReportedError, "sensor offline"),
])
def test_malformed_transaction_messages(body: dict, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        parse_transaction_message(body)


def test_unsigned_or_high_s_transactions_are_refused_by_the_controller() -> None:
    msg = ProvisioningMessage.parse(DRAFT_PROVISIONING)
    unsigned = msg.unsigned_transaction(b"x").encode()
    with pytest.raises(ethtx.BadTransactionSignature):
        parse_transaction_message({"type": 1, "transaction": unsigned.hex()})
    tx = ethtx.decode(DRAFT_TX)
    n = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
    twin = ethtx.Transaction(tx.nonce, tx.gas_price, tx.gas_limit, tx.to, tx.value, tx.data, tx.v ^ 1, tx.r,
                             n - tx.s).encode()
    with pytest.raises(ethtx.BadTransactionSignature, match="high-S"):
        parse_transaction_message({"type": 1, "transaction": "0x" + twin.hex()})


# --- fuzzing: only the package's own errors come out ----------------------------------------------------

_FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
)


def _mutations(draw_bytes: bytes, data: st.DataObject) -> bytes:
    raw = bytearray(DRAFT_TX)
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(raw) - 1))
        raw[i] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(raw)))
    return bytes(raw[:cut]) + draw_bytes


@_FUZZ
@given(st.binary(max_size=300))
def test_fuzz_transaction_message_bytes(body: bytes) -> None:
    with contextlib.suppress(AxonError):
        parse_transaction_message(body)


@pytest.mark.slow
@_FUZZ
@given(st.dictionaries(st.sampled_from(["type", "transaction", "error", "x"]), _json_values, max_size=4))
def test_fuzz_transaction_message_objects(doc: dict) -> None:
    for form in (doc, json.dumps(doc)):
        with contextlib.suppress(AxonError):
            parse_transaction_message(form)


@_FUZZ
@given(st.binary(max_size=8), st.data())
def test_fuzz_tx_decoder_with_mutated_draft_transactions(tail: bytes, data: st.DataObject) -> None:
    raw = _mutations(tail, data)
    try:
        result = parse_transaction_message({"type": 1, "transaction": raw.hex()})
    except AxonError:
        return
    assert result.raw == raw and result.tx_hash.startswith("0x")


_big_endian = st.integers(0, 2**300).map(lambda n: n.to_bytes((n.bit_length() + 7) // 8, "big"))
_rlp_item = st.binary(max_size=40) | _big_endian


@_FUZZ
@given(st.lists(_rlp_item | st.lists(_rlp_item, max_size=3), min_size=0, max_size=11))
def test_fuzz_tx_decoder_with_rlp_lists(items: list) -> None:
    """Well-formed RLP of the wrong shape, and 9-field lists with arbitrary v, r, s values."""
    raw = rlp.encode(items)
    try:
        result = decode_transaction(raw)
    except AxonError:
        return
    assert Account.recover_transaction(raw).lower() == result.sender


@pytest.mark.slow
@_FUZZ
@given(st.dictionaries(st.sampled_from([*DRAFT_PROVISIONING, "extra"]), _json_values, max_size=7)
       | st.fixed_dictionaries({k: _json_values | st.just(v) for k, v in DRAFT_PROVISIONING.items()}))
def test_fuzz_provisioning_messages(doc: dict) -> None:
    try:
        msg = ProvisioningMessage.parse(json.dumps(doc))
    except AxonError:
        return
    reply = ConstraintNode(NODE_KEY).handle_provisioning(msg, b"r", None)
    parse_transaction_message(reply.to_json()).check_matches(msg)


# --- transports -------------------------------------------------------------------------------------------


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_coap_round_trip_over_a_real_socket() -> None:
    readings = iter([b"Temperature=25C", attestation({"decision": "ALLOW", "pad": "x" * 4000})])

    async def scenario() -> None:
        port = _free_udp_port()
        server = await coap_node.serve(ConstraintNode(NODE_KEY), lambda: next(readings), 4242, port=port)
        uri = f"coap://127.0.0.1:{port}/provision"
        try:
            msg = ProvisioningMessage.parse(DRAFT_PROVISIONING)
            first = await coap_node.provision(uri, msg)
            assert first.sender == NODE_KEY.address and first.data == b"Temperature=25C"
            assert first.chain_id == 4242 and Account.recover_transaction(first.raw).lower() == first.sender
            # A larger answer (an attestation) travels block-wise.
            second = await coap_node.provision(uri, ProvisioningMessage.parse(_with(nonce=13)))
            assert json.loads(second.data)["decision"] == "ALLOW" and second.transaction.nonce == 13

            client = await aiocoap.Context.create_client_context()
            try:
                bad = await client.request(aiocoap.Message(
                    code=aiocoap.POST, uri=uri, payload=b'{"type": 1, "nonce": -1}',
                    content_format=ContentFormat.JSON)).response
                # issue 10: a body declared as text, or not declared at all, is refused, however good it is
                good = json.dumps(DRAFT_PROVISIONING).encode()
                undeclared = [await client.request(aiocoap.Message(code=aiocoap.POST, uri=uri, payload=good,
                                                                   **fmt)).response
                              for fmt in ({"content_format": ContentFormat.TEXT}, {})]
            finally:
                await client.shutdown()
            assert bad.code == aiocoap.BAD_REQUEST
            assert json.loads(bad.payload)["error"]["code"] == "AXON-CN-MALFORMED"
            assert [(r.code, json.loads(r.payload)) for r in undeclared] == [
                (aiocoap.UNSUPPORTED_CONTENT_FORMAT, {"type": 0, "error": {
                    "code": "AXON-CN-MEDIA-TYPE",
                    "message": f"{shown} is not JSON; send application/json (Content-Format 50)"}})
                for shown in ("Content-Format 0", "no Content-Format")]
            with pytest.raises(NodeReportedError, match="could not read its data"):  # readings exhausted
                await coap_node.provision(uri, msg)
        finally:
            await server.shutdown()

    asyncio.run(scenario())


def test_coap_client_reports_an_unreachable_node() -> None:
    port = _free_udp_port()  # nothing listens there
    msg = ProvisioningMessage.parse(DRAFT_PROVISIONING)
    with pytest.raises(coap_node.NodeUnreachable) as exc:
        asyncio.run(coap_node.provision(f"coap://127.0.0.1:{port}/provision", msg, timeout=3))
    assert exc.value.code == "AXON-CN-TRANSPORT"


def test_http_router_translates_to_the_node() -> None:
    app = FastAPI()
    app.include_router(make_router(partial(ConstraintNode(NODE_KEY).respond, read=lambda: b"Temperature=25C",
                                           chain_id=None)))
    client = TestClient(app, headers=JSON_BODY)
    ok = client.post(PATH, content=json.dumps(DRAFT_PROVISIONING))
    assert ok.status_code == 200 and ok.headers["content-type"] == "application/json"
    parsed = parse_transaction_message(ok.content)
    assert parsed.sender == NODE_KEY.address and parsed.data == b"Temperature=25C" and parsed.chain_id is None
    bad = client.post(PATH, content=json.dumps(_with(nonce=True)))
    assert bad.status_code == 400 and "boolean" in bad.json()["error"]["message"]
    assert bad.json()["type"] == 0
    assert PATH in client.get("/openapi.json").json()["paths"]

    failing = FastAPI()
    failing.include_router(make_router(partial(ConstraintNode(NODE_KEY).respond, read=lambda: 1 / 0,  # type: ignore[arg-type,return-value]
                                               chain_id=None)))
    broken = TestClient(failing, headers=JSON_BODY).post(PATH, content=json.dumps(DRAFT_PROVISIONING))
    assert broken.status_code == 500 and broken.json()["error"]["code"] == "AXON-CN-DATA"


@pytest.mark.parametrize(("headers", "shown"), [
    ({"Content-Type": "text/plain"}, "content type 'text/plain'"),
    ({"Content-Type": "application/xml"}, "content type 'application/xml'"),
    ({}, "no content type"),
])
def test_http_router_refuses_a_body_not_declared_json(headers, shown) -> None:
    # issue 10: as the CoAP node's 4.15 and /v1/evaluate's 415, whatever the body; it is not even read
    bodies: list[bytes] = []
    node = ConstraintNode(NODE_KEY)

    def respond(body: bytes) -> TransactionMessage:
        bodies.append(body)
        return node.respond(body, read=lambda: b"Temperature=25C", chain_id=None)

    app = FastAPI()
    app.include_router(make_router(respond))
    client = TestClient(app)
    refused = client.post(PATH, content=json.dumps(DRAFT_PROVISIONING), headers=headers)
    assert refused.status_code == 415 and refused.headers["content-type"] == "application/json"
    assert refused.json() == {"type": 0, "error": {"code": "AXON-CN-MEDIA-TYPE",
                                                   "message": f"{shown} is not JSON; send application/json"}}
    assert bodies == []
    declared = client.post(PATH, content=json.dumps(DRAFT_PROVISIONING),
                           headers={"Content-Type": "application/json; charset=utf-8"})
    assert declared.status_code == 200 and len(bodies) == 1


def test_transaction_message_round_trip() -> None:
    reply = TransactionMessage(1, DRAFT_TX)
    assert json.loads(reply.to_json())["transaction"] == DRAFT_TX.hex().upper()
    assert parse_transaction_message(reply.to_json()).tx_hash == DRAFT_TXID


# --- axon tx decode ---------------------------------------------------------------------------------------


def test_axon_tx_decode(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    assert axon(["tx", "decode", DRAFT_TX_HEX]) == 0
    out = capsys.readouterr().out
    assert DRAFT_TXID in out and "Temperature=25C" in out and "pre-EIP-155" in out
    assert Account.recover_transaction(DRAFT_TX).lower() in out

    assert axon(["tx", "decode", "0x" + DRAFT_TX.hex(), "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["tx_hash"] == DRAFT_TXID and shown["nonce"] == 12 and shown["chain_id"] is None
    assert shown["sender"] == Account.recover_transaction(DRAFT_TX).lower() and shown["signature_valid"]

    binary = ConstraintNode(NODE_KEY).handle_provisioning(ProvisioningMessage.parse(DRAFT_PROVISIONING),
                                                          b"\x00\xffraw", 99).transaction
    stdin = io.TextIOWrapper(io.BytesIO(f"{binary.hex()}\n".encode()))
    monkeypatch.setattr("sys.stdin", stdin)  # a real stdin: the CLI reads its bytes (.buffer)
    assert axon(["tx", "decode", "-", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["data"] == "0x00ff726177" and shown["data_text"] is None and shown["chain_id"] == 99

    assert axon(["tx", "decode", "xyz"]) == 2
    assert axon(["tx", "decode", "c0"]) == 1
    unsigned = ProvisioningMessage.parse(DRAFT_PROVISIONING).unsigned_transaction(b"x").encode()
    assert axon(["tx", "decode", unsigned.hex()]) == 1
    assert "INVALID SIGNATURE" in capsys.readouterr().out
