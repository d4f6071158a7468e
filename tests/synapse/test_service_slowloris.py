"""The REST service against slow and greedy clients (issue 10 item 4), attacked with raw sockets.

Two real servers: one with short timeouts (slow heads, idle connections, slow bodies, huge heads), and
one with long timeouts and a file-descriptor limit far below what the attack opens, so that only the
connection cap stands between the attackers and the ledger follower. No timing is asserted: each test
waits for the event it expects, with generous socket timeouts."""

from __future__ import annotations

import json
import resource
import socket
import subprocess
import sys
import threading
import time
from collections import deque

import httpx
import pytest

from synapse.api.connections import ConnectionTable
from synapse.service.auth import hash_token, new_token
from tests.service_support import AUTO, NORMAL, Plant, Server, write_config

BODY = {"policy": "boiler-guard", "telemetry": NORMAL, "context": AUTO}
ADMIN_TOKEN = new_token()
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
WAIT = 60.0  # the most any socket read waits for the server: generous, the machine is shared
SHORT = 1.0  # the short server's head, body and keep-alive timeouts
CAP = 64  # the long server's connections per worker
NOFILE = CAP + 256  # its RLIMIT_NOFILE: exactly what serve() asks for, far below the attack's count
pytestmark = [pytest.mark.timeout(240), pytest.mark.slow]


def make_server(plant: Plant, name: str, server: dict, *, nofile: int | None = None) -> Server:
    config = write_config(plant.dir / f"{name}.toml", {
        "server": server,
        "ledger": {"path": plant.ledger_path, "follow_interval": 0.5},
        "node": {"key": plant.node_key},
        "store": {"path": plant.dir / f"store-{name}"},
        "decision_log": {"path": plant.dir / f"decisions-{name}"},
        "auth": {"open_evaluate": True},
    }, tokens=[{"name": "admin", "sha256": hash_token(ADMIN_TOKEN), "scopes": ["admin"]}])
    return Server(plant.dir, config, nofile=nofile).wait_ready()


@pytest.fixture(scope="module")
def plant(tmp_path_factory) -> Plant:
    return Plant(tmp_path_factory.mktemp("slowloris"))


@pytest.fixture(scope="module")
def short(plant):
    server = make_server(plant, "short", {"head_timeout": SHORT, "body_timeout": SHORT,
                                          "keep_alive_timeout": SHORT})
    yield server
    assert server.stop() == 0


def connect(server: Server, source: str = "127.0.0.1") -> socket.socket:
    sock = socket.socket()
    sock.settimeout(WAIT)
    sock.bind((source, 0))
    sock.connect(("127.0.0.1", server.port))
    return sock


def read_to_end(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection; a reset ends it too."""
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except ConnectionResetError:
        pass
    finally:
        sock.close()
    return data


def error_code(response: bytes) -> str:
    return json.loads(response.split(b"\r\n\r\n", 1)[1])["code"]


# --- the connection table, alone --------------------------------------------------------------------


def test_table_evicts_the_least_recently_active_waiting_connection() -> None:
    table: ConnectionTable[str] = ConnectionTable(3)
    assert table.open("a") == (True, None)
    assert table.open("b") == (True, None)
    assert table.open("c") == (True, None)
    table.active("a")  # a sent something: b is now the least recently active
    assert table.open("d") == (True, "b")
    assert len(table) == 3
    table.busy("c")  # c's request is being served: it cannot be evicted
    assert table.open("e") == (True, "a")
    assert table.open("f") == (True, "d")
    table.busy("e")
    table.busy("f")
    assert table.open("g") == (False, None)  # all busy: refused, nobody evicted
    table.waiting("c")  # c's response is complete
    assert table.open("g") == (True, "c")
    table.close("e")
    assert table.open("h") == (True, None)
    assert len(table) == 3


def test_table_ignores_news_of_connections_it_no_longer_holds() -> None:
    table: ConnectionTable[str] = ConnectionTable(1)
    table.open("a")
    assert table.open("b") == (True, "a")
    for report in (table.active, table.busy, table.waiting, table.close):
        report("a")  # the evicted connection's late events change nothing
    assert len(table) == 1
    table.busy("b")
    assert table.open("c") == (False, None)


# --- the short server: heads, bodies, idleness -------------------------------------------------------


def test_slowloris_head_is_cut_with_408(short) -> None:
    sock = connect(short)
    sock.sendall(b"POST /v1/evaluate HTTP/1.1\r\nHost: x\r\n")
    stop = threading.Event()

    def trickle() -> None:  # one header byte at a time, for far longer than the head timeout
        try:
            while not stop.wait(0.2):
                sock.sendall(b"X")
        except OSError:
            pass

    thread = threading.Thread(target=trickle)
    thread.start()
    try:
        response = read_to_end(sock)
    finally:
        stop.set()
        thread.join()
    assert response.startswith(b"HTTP/1.1 408 ")
    assert error_code(response) == "SYNAPSE-SVC-HEAD-TIMEOUT"


def test_connection_that_sends_nothing_is_closed(short) -> None:
    assert read_to_end(connect(short)) == b""


def test_idle_keep_alive_connection_is_closed(short) -> None:
    sock = connect(short)
    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    response = read_to_end(sock)  # the answer, then the close once the connection has been idle
    assert response.startswith(b"HTTP/1.1 200 ")
    assert response.count(b"HTTP/1.1") == 1


def test_slow_body_is_cut(short) -> None:
    sock = connect(short)
    body = json.dumps(BODY).encode()
    sock.sendall(b"POST /v1/evaluate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body[:10])
    response = read_to_end(sock)
    assert not response.startswith(b"HTTP/1.1 200 ")  # never a decision for half a request


def test_large_head_gets_431(short) -> None:
    sock = connect(short)
    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Filler: " + b"a" * 20_000 + b"\r\n\r\n")
    response = read_to_end(sock)
    assert response.startswith(b"HTTP/1.1 431 ")
    assert error_code(response) == "SYNAPSE-SVC-HEAD-TOO-LARGE"


def test_82_megabyte_head_is_never_answered_200(short) -> None:
    sock = connect(short)
    chunk = b"a" * 65536
    sent = 0
    try:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Filler: ")
        while sent < 82 * 1024 * 1024:
            sock.sendall(chunk)
            sent += len(chunk)
        sock.sendall(b"\r\n\r\n")
    except (BrokenPipeError, ConnectionResetError):
        pass  # the server stopped reading: the point
    response = read_to_end(sock)
    assert sent < 82 * 1024 * 1024  # refused long before the end of the head
    assert response == b"" or response.startswith(b"HTTP/1.1 431 ")


def test_head_just_under_the_limit_is_served(short) -> None:
    sock = connect(short)
    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Filler: " + b"a" * 15_000 + b"\r\n\r\n")
    assert read_to_end(sock).startswith(b"HTTP/1.1 200 ")


# --- the capped server: many connections, and the ledger follower under attack ------------------------


def test_cap_larger_than_the_descriptor_limit_is_refused_at_start(plant) -> None:
    config = write_config(plant.dir / "too-many.toml", {
        "server": {"max_connections": NOFILE},
        "node": {"key": plant.node_key},
        "store": {"path": plant.dir / "store-too-many"},
        "decision_log": {"path": plant.dir / "decisions-too-many"},
    })
    done = subprocess.run([sys.executable, "-m", "synapse", "serve", "--config", str(config), "--port", "0"],
                          capture_output=True, text=True, timeout=WAIT, cwd=plant.dir,
                          preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (NOFILE, NOFILE)))
    assert done.returncode == 2
    assert "server.max_connections" in done.stderr and "ulimit -n" in done.stderr


class Attack:
    """Opens connections as fast as `pace` allows, each sending the start of a head and nothing more,
    and keeps the newest `hold` of them open from its side."""

    def __init__(self, server: Server, *, pace: float, hold: int) -> None:
        self.server, self.pace, self.hold = server, pace, hold
        self.opened = 0
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run)

    def __enter__(self) -> Attack:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        held: deque[socket.socket] = deque()
        try:
            while not self._stop.wait(self.pace):
                try:
                    sock = connect(self.server)
                    sock.sendall(b"POST /v1/evaluate HTTP/1.1\r\nHost: x\r\nX-Slow: ")
                except OSError as exc:
                    self.errors.append(type(exc).__name__)
                    continue
                self.opened += 1
                held.append(sock)
                if len(held) > self.hold:
                    held.popleft().close()
        finally:
            for sock in held:
                sock.close()

    def wait_opened(self, n: int) -> None:
        while self.opened < n:
            assert self._thread.is_alive()
            time.sleep(0.05)


def evaluate(server: Server) -> httpx.Response:
    """A legitimate client: a fresh connection per request, retried when it is dropped (as clients do)."""
    last: Exception | None = None
    for _ in range(5):
        try:
            with httpx.Client(base_url=server.base, timeout=WAIT) as client:
                return client.post("/v1/evaluate", json=BODY)
        except httpx.TransportError as exc:
            last = exc
    raise AssertionError(f"the legitimate client was never served: {last!r}")


def test_revocation_is_applied_and_clients_served_while_connections_flood_in(plant) -> None:
    server = make_server(plant, "capped", {"max_connections": CAP, "head_timeout": WAIT,
                                           "body_timeout": WAIT, "keep_alive_timeout": WAIT}, nofile=NOFILE)
    try:
        sop, urn = plant.artifact("1.0.0")
        assert server.client.put("/v1/artifacts", content=sop, headers=ADMIN).status_code == 201
        with Attack(server, pace=0.005, hold=3 * NOFILE) as attack:
            attack.wait_opened(2 * NOFILE)  # more half-open requests than the server has descriptors
            assert evaluate(server).json()["verdict"] == "ALLOW"
            plant.revoke(urn, "slowloris drill")
            deadline = time.monotonic() + WAIT
            while (answer := evaluate(server)).status_code == 200:
                assert time.monotonic() < deadline, "the revocation was not applied during the attack"
                time.sleep(0.2)
            assert answer.status_code == 409 and "slowloris drill" in answer.json()["message"]
            assert attack.opened > NOFILE
        assert attack.errors == []  # every attacking connection was accepted (then closed), none refused
        events = server.events()
        assert not [e for e in events if e.get("event") == "follow_failed"]
        assert "Too many open files" not in server.log()
    finally:
        assert server.stop() == 0
