"""The other party for tests/axon/test_p2p_interop.py, run as its own process.

    python tests/axon/p2p_peer.py (--listen | --connect PORT) --secret HEX --half top|bottom
                             --expect N --reply M [--frame-payload K]

Receives N bytes with one recv call, answers with SHA-256 of what it got (frame code 1) and then M
bytes of pattern(M, "from-peer") (code 2), then waits for the other side to close. With --listen it
prints "PORT <n>" first. Exit 0 on success; 1 with "<code> <message>" on a channel error.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import sys

from axon.transports.p2p import Channel, connect
from axon.transports.p2p_protocol import P2pClosed, P2pConfig, P2pError


def pattern(n: int, label: str) -> bytes:
    return hashlib.shake_256(label.encode()).digest(n) if n else b""


async def converse(channel: Channel, expect: int, reply: int) -> None:
    data = await channel.recv(expect, timeout=20)
    await channel.send(hashlib.sha256(data).digest(), code=1)
    await channel.send(pattern(reply, "from-peer"), code=2)
    with contextlib.suppress(P2pClosed):  # wait for the other side to hang up
        await channel.recv(1, timeout=20)
    await channel.close()


async def main(args: argparse.Namespace) -> None:
    secret = bytes.fromhex(args.secret)
    config = P2pConfig(frame_payload=args.frame_payload)
    if args.connect:
        await converse(await connect("127.0.0.1", args.connect, secret, args.half, config), args.expect,
                       args.reply)
        return
    done = asyncio.get_running_loop().create_future()

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await converse(Channel(reader, writer, secret, args.half, config), args.expect, args.reply)
            done.set_result(None)
        except P2pError as exc:
            done.set_exception(exc)

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    print("PORT", server.sockets[0].getsockname()[1], flush=True)
    try:
        await done
    finally:
        server.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--listen", action="store_true")
    where.add_argument("--connect", type=int, metavar="PORT")
    parser.add_argument("--secret", required=True)
    parser.add_argument("--half", required=True, choices=["top", "bottom"])
    parser.add_argument("--expect", type=int, required=True)
    parser.add_argument("--reply", type=int, required=True)
    parser.add_argument("--frame-payload", type=int, default=1 << 16)
    try:
        asyncio.run(main(parser.parse_args()))
    except P2pError as exc:
        print(exc.code, exc, file=sys.stderr)
        sys.exit(1)
    print("OK", flush=True)
