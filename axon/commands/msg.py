"""`axon msg ...`: seal, open, send and read SIP-017 messages (docs/messaging.md)."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from pathlib import Path
from typing import Any

from axon import strictjson
from axon.clikit import EXIT_FAIL, EXIT_OK, UsageError, help_for, read_bytes, read_text, write_atomic
from axon.commands.loaders import LEDGER_ENV, load_key, open_ledger
from axon.keys import KEY_ENV, InvalidKey, PublicKey
from axon.ledger import LedgerError, ops
from axon.messaging import envelope
from axon.messaging.errors import MessagingConfigError, MessagingError, SchemaError
from axon.messaging.inbox import InboxItem, LedgerInbox
from axon.messaging.inner import Message
from axon.messaging.receiver import DEFAULT_WINDOW_S, MAX_WINDOW_S, Received, Receiver, ReceiverConfig
from axon.messaging.signed import LedgerKeys, SignedEnvelope, sign

HELP = f"""Seal, open, send and read SIP-017 end-to-end encrypted messages.

  axon msg seal --to PUBKEY_HEX --type TYPE --body JSON     print an envelope (outer JSON)
  axon msg open --key KEYFILE FILE                          decrypt, check, print the inner message
  axon msg send --to DID --type TYPE --body JSON --key KEYFILE   post it on the ledger (OpCode 9)
  axon msg inbox --key KEYFILE                              read new messages to you, mark them read
  axon msg send ... --broker mqtts://HOST:PORT              publish it through an MQTT broker instead
  axon msg watch --key KEYFILE --broker mqtts://HOST:PORT   print messages to you from the broker as
                                                            they arrive (alerts from nodes, replies)

Types: CMD, LOG, ALERT, KEY_EXCHANGE (others are valid but receivers ignore them). Keys come from
--key or ${KEY_ENV}; the ledger from --ledger or ${LEDGER_ENV}.

exit codes: 0 done, 1 a message failed a check (or the ledger refused), 2 bad arguments, key or file
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("msg", help="seal, open, send and read SIP-017 messages",
                                   description=HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.set_defaults(run=help_for(parser))
    sub = parser.add_subparsers(title="msg commands", metavar="COMMAND")

    content = argparse.ArgumentParser(add_help=False)
    content.add_argument("--type", required=True, help="message type, uppercase (CMD, LOG, ALERT, ...)")
    content.add_argument("--body", required=True, metavar="JSON", help='the body, a JSON object, e.g. '
                         '\'{"command": "ping"}\'')
    window = argparse.ArgumentParser(add_help=False)
    window.add_argument("--window", type=int, default=DEFAULT_WINDOW_S, metavar="SECONDS",
                        help=f"freshness window (default {DEFAULT_WINDOW_S}, at most {MAX_WINDOW_S})")
    keyed = argparse.ArgumentParser(add_help=False)
    keyed.add_argument("--key", metavar="KEYFILE", help=f"your key file (default: ${KEY_ENV})")
    ledgered = argparse.ArgumentParser(add_help=False)
    ledgered.add_argument("--ledger", metavar="PATH", help=f"the ledger file (default: ${LEDGER_ENV})")
    brokered = argparse.ArgumentParser(add_help=False)
    brokered.add_argument("--broker", metavar="URL", help="an MQTT broker, mqtt://HOST[:PORT] or "
                          "mqtts://HOST[:PORT] (TLS); messages go to <prefix>/to/<recipient's address>")
    brokered.add_argument("--ca-file", type=Path, metavar="PEM", help="the CA of the broker's certificate")
    brokered.add_argument("--username", help="broker user name")
    brokered.add_argument("--password-file", type=Path, metavar="FILE", help="broker password, from a file")
    brokered.add_argument("--topic-prefix", default="sopcos/v1", metavar="PREFIX",
                          help="topic prefix (default sopcos/v1)")

    p = sub.add_parser("seal", parents=[content], help="encrypt to a public key, print the envelope",
                       description="Encrypt a message to PUBKEY_HEX with a fresh ephemeral key and print "
                                   "the SIP-017 envelope (one line of JSON).")
    p.add_argument("--to", required=True, metavar="PUBKEY_HEX", help="recipient's secp256k1 public key")
    p.set_defaults(run=_seal)

    p = sub.add_parser("open", parents=[keyed, window], help="decrypt and check an envelope",
                       description="Decrypt an envelope with your key, check it as a receiver would "
                                   "(schema, freshness window) and print the inner message as JSON. A "
                                   "replay cannot be detected from one file: receivers keep a nonce cache.")
    p.add_argument("file", metavar="FILE", help="envelope JSON file, or - for standard input")
    p.add_argument("--at", type=float, metavar="UNIX_TIME",
                   help="check freshness at this time (default: now)")
    p.set_defaults(run=_open)

    p = sub.add_parser("send", parents=[content, keyed, ledgered, brokered],
                       help="send a message on the ledger (or through a broker)",
                       description="Encrypt a message to DID's key on the ledger and post it as an OpCode 9 "
                                   "MESSAGE signed by your key (which is how the recipient knows it is you). "
                                   "With --broker, publish it as a signed wrapper through that MQTT broker "
                                   "instead (QoS 1; done once the broker acknowledged it).")
    p.add_argument("--to", required=True, metavar="DID", help="recipient's DID (registered on the ledger)")
    p.set_defaults(run=_send)

    p = sub.add_parser("inbox", parents=[keyed, ledgered, window], help="read new messages to you",
                       description="Decrypt and check the ledger's messages to your DID and address that you "
                                   "have not read yet, print them, and mark them read. Each is checked for "
                                   "freshness against the time the ledger accepted it. Exit 1 if any was "
                                   "dropped (it is printed with its reason).")
    p.add_argument("--state", metavar="FILE",
                   help="where the read position is kept (default: LEDGER.inbox-ADDRESS.json)")
    p.add_argument("--peek", action="store_true", help="do not mark anything read")
    p.add_argument("--json", action="store_true", help="one JSON object per message")
    p.set_defaults(run=_inbox)

    p = sub.add_parser("watch", parents=[keyed, ledgered, window, brokered],
                       help="print messages to you from an MQTT broker",
                       description="Subscribe to your topic on the broker and print each message as it "
                                   "arrives, checked as a receiver would (sender's key and level on the "
                                   "ledger, signature, freshness, nonce). Exit 1 if any was dropped.")
    p.add_argument("--count", type=int, metavar="N", help="stop after N messages")
    p.add_argument("--timeout", type=float, metavar="SECONDS", help="stop after this long")
    p.add_argument("--json", action="store_true", help="one JSON object per message")
    p.add_argument("--client-id", metavar="ID",
                   help="a persistent session under this client id: the broker keeps what arrives for "
                        "you while you are away (a console closed, the broker restarted with persistence)")
    p.set_defaults(run=_watch)


# --- argument helpers -----------------------------------------------------------------------------


def _message(args: argparse.Namespace) -> Message:
    try:
        body = strictjson.loads(args.body)
    except strictjson.JsonError as exc:
        raise UsageError(f"--body is not JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise UsageError("--body must be a JSON object, e.g. '{\"command\": \"ping\"}'")
    try:
        return Message.new(args.type, body, time.time())
    except SchemaError as exc:
        raise UsageError(f"{exc} (--type/--body)") from exc


def _config(args: argparse.Namespace) -> ReceiverConfig:
    try:
        return ReceiverConfig(window_s=args.window)
    except MessagingConfigError as exc:
        raise UsageError(str(exc)) from exc


def _fail(exc: MessagingError | LedgerError) -> int:
    print(f"axon msg: {exc} [{exc.code}]", file=sys.stderr)
    return EXIT_FAIL


# --- commands -------------------------------------------------------------------------------------


def _seal(args: argparse.Namespace) -> int:
    try:
        recipient = PublicKey.from_hex(args.to)
    except InvalidKey as exc:
        raise UsageError(f"--to: {exc}") from exc
    print(envelope.seal(recipient, _message(args)).to_json())
    return EXIT_OK


def _open(args: argparse.Namespace) -> int:
    identity = load_key(args.key)
    config = _config(args)
    data = read_bytes(args.file, stdin=True)
    receiver = Receiver(identity.key, config)
    try:
        message = envelope.open(identity.key, data, config.max_envelope_bytes)
        known = receiver.check(message, now=time.time() if args.at is None else args.at)
    except MessagingError as exc:
        return _fail(exc)
    if known is None:
        print(f"axon msg: note: type {message.type} is unknown; receivers ignore it", file=sys.stderr)
    print(json.dumps(message.to_dict(), indent=2, ensure_ascii=False))
    return EXIT_OK


def _send(args: argparse.Namespace) -> int:
    identity = load_key(args.key)
    message = _message(args)
    with open_ledger(args.ledger) as ledger:
        record = ledger.key(args.to)
        if record is None or record.revoked:
            raise UsageError(f"--to: {args.to} has no unrevoked key on this ledger")
        sealed = envelope.seal(record.public_key, message)
        if args.broker:
            return _publish(args, sign(identity, args.to, sealed), record.public_key.address, message)
        try:
            entry = ledger.sign_and_submit(identity, ops.message(args.to, sealed.to_dict()), int(time.time()))
        except LedgerError as exc:
            return _fail(exc)
    print(f"sent {message.type} to {args.to}: ledger entry #{entry.seq}, nonce {message.nonce}")
    return EXIT_OK


def _inbox(args: argparse.Namespace) -> int:
    identity = load_key(args.key)
    config = _config(args)
    with open_ledger(args.ledger) as ledger:
        state_path = Path(args.state or f"{ledger.path}.inbox-{identity.key.address}.json")
        state = _read_state(state_path)
        receiver = Receiver(identity.key, config, did=identity.did)
        receiver.nonces.restore(state["nonces"], state["forgotten_until"])
        inbox = LedgerInbox(ledger, receiver, after_seq=state["after_seq"])
        items = inbox.poll(at_entry_time=True)
    for item in items:
        print(json.dumps(item.to_dict(), ensure_ascii=False) if args.json else _line(item))
    if not args.peek:
        state = {"after_seq": inbox.after_seq, "nonces": receiver.nonces.to_dict(),
                 "forgotten_until": receiver.nonces.forgotten_until}
        write_atomic(state_path, json.dumps(state).encode("utf-8"), what="inbox state")
    if not items and not args.json:
        print("no new messages", file=sys.stderr)
    return EXIT_FAIL if any(item.error is not None for item in items) else EXIT_OK


def _broker(args: argparse.Namespace, client_id: str | None = None) -> Any:
    from axon.messaging import mqtt  # aiomqtt loads only for the commands that talk to a broker

    if not args.broker:
        raise UsageError("--broker is required (mqtt://HOST[:PORT] or mqtts://HOST[:PORT])")
    password = None
    if args.password_file is not None:
        password = read_text(args.password_file, what="broker password").strip()
    try:
        return mqtt.settings_from_url(args.broker, ca_file=args.ca_file, username=args.username,
                                      password=password, client_id=client_id,
                                      topic_prefix=args.topic_prefix)
    except ValueError as exc:
        raise UsageError(f"--broker: {exc}") from exc


def _publish(args: argparse.Namespace, signed: SignedEnvelope, address: str, message: Message) -> int:
    import asyncio

    from axon.messaging import mqtt

    settings = _broker(args)

    async def publish() -> str:
        async with mqtt.connected_link(settings) as link:
            return await link.send(signed, address)

    try:
        topic = asyncio.run(publish())
    except MessagingError as exc:
        return _fail(exc)
    print(f"sent {message.type} to {args.to} through {settings.where()} on {topic}, nonce {message.nonce}")
    return EXIT_OK


def _watch(args: argparse.Namespace) -> int:
    import asyncio

    from axon.messaging import mqtt

    identity = load_key(args.key)
    settings = _broker(args, client_id=args.client_id)
    receiver = Receiver(identity.key, _config(args), did=identity.did)
    topic = mqtt.topic_for(identity.key.address, settings.topic_prefix)
    outcomes: list[bool] = []  # accepted or ignored: True; dropped: False

    async def watch(keys: LedgerKeys) -> None:
        done = asyncio.Event()

        async def on_message(topic: str, payload: bytes) -> None:
            now = time.time()
            try:
                received, error = receiver.accept_signed(payload, keys, now), None
            except MessagingError as exc:
                received, error = None, exc
            print(_watch_line(now, topic, received, error, args.json), flush=True)
            outcomes.append(error is None)
            if args.count is not None and len(outcomes) >= args.count:
                done.set()

        async with mqtt.connected_link(settings, topic, on_message):
            print(f"watching {topic} on {settings.where()}", file=sys.stderr, flush=True)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(done.wait(), args.timeout)

    with open_ledger(args.ledger) as ledger:
        try:
            asyncio.run(watch(LedgerKeys(ledger)))
        except MessagingError as exc:
            return _fail(exc)
        except KeyboardInterrupt:
            pass
    return EXIT_OK if all(outcomes) else EXIT_FAIL


def _watch_line(now: float, topic: str, received: Received | None, error: MessagingError | None,
                as_json: bool) -> str:
    when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))
    if as_json:
        doc: dict[str, Any] = {"time": int(now), "topic": topic}
        if received is not None:
            doc.update(status="accepted", sender={"did": received.sender.did,
                                                  "level": f"LVL_{received.sender.level}"},
                       message=received.message.to_dict())
        elif error is not None:
            doc.update(status="dropped", error=error.to_dict())
        else:
            doc.update(status="ignored", reason="unknown message type")
        return json.dumps(doc, ensure_ascii=False)
    if received is not None:
        body = json.dumps(received.message.body, ensure_ascii=False, separators=(",", ":"))
        return (f"{when} {received.message.type} from {received.sender.did} "
                f"(LVL_{received.sender.level}): {body}")
    if error is not None:
        return f"{when} dropped: {error.code}: {error}"
    return f"{when} ignored: unknown message type"


def _line(item: InboxItem) -> str:
    when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(item.ledger_time))
    if item.received is not None:
        sender, message = item.received.sender, item.received.message
        body = json.dumps(message.body, ensure_ascii=False, separators=(",", ":"))
        return f"#{item.seq} {when} {message.type} from {sender.did} (LVL_{sender.level}): {body}"
    if item.error is not None:
        return f"#{item.seq} {when} dropped (from {item.sender_address}): {item.error.code}: {item.error}"
    return f"#{item.seq} {when} ignored (from {item.sender_address}): unknown message type"


def _read_state(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {"after_seq": 0, "nonces": {}, "forgotten_until": -1}
    text = read_text(path, what="inbox state")
    try:
        state = strictjson.loads(text)
        return {"after_seq": int(state["after_seq"]),
                "nonces": {str(k): int(v) for k, v in dict(state["nonces"]).items()},
                "forgotten_until": int(state["forgotten_until"])}
    except (strictjson.JsonError, ValueError, KeyError, TypeError) as exc:
        raise UsageError(f"inbox state {path} is unreadable ({exc}); move it away to re-read "
                         "everything") from exc
