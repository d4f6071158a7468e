"""Running the app: one uvicorn server per worker process.

The port is bound here, before any worker starts, so a busy port is a clear error (exit 2) rather
than a log line from inside uvicorn. With several workers each is its own process (spawned, so no
state is inherited) with its own `PolicyService`, decision-log stream `w<N>` and SO_REUSEPORT listening
socket (the kernel spreads connections over them); SIGTERM or SIGINT to the parent is passed on to
every worker, and each drains its requests, stops its background tasks and seals its log before it
exits. Each worker bounds its connections (synapse/api/connections.py); the parent checks first that
the file-descriptor limit leaves room for them and for the worker's own files.
"""

from __future__ import annotations

import faulthandler
import logging
import multiprocessing
import os
import resource
import signal
import socket
import sys
import threading
from pathlib import Path
from types import FrameType

import uvicorn

from axon.keys import load_identity
from synapse.api.app import Background, create_app
from synapse.api.connections import ConnectionLimits, guarded_protocol
from synapse.hardening import harden_process
from synapse.service import logs
from synapse.service.config import ServiceConfig
from synapse.service.errors import ConfigError
from synapse.service.service import PolicyService

GRACEFUL_SHUTDOWN_S = 10
# Descriptors a worker keeps beyond its client connections: listening socket, event loop, ledger,
# store, decision log, threads' files. A worker at its connection cap can still open all of them.
FD_RESERVE = 256


_REUSE_PORT = hasattr(socket, "SO_REUSEPORT")


def bind(host: str, port: int, *, reuse_port: bool = False, listen: bool = True) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY on accepted sockets only when the listening
    # socket says TCP; without it Nagle's algorithm waits for the client's delayed ACK (Linux's delayed-ACK
    # timer, at least 40 ms) before sending the rest of every response.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host.strip("[]"), port))
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    if listen:
        sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def serve(config: ServiceConfig, *, preload: list[Path] | None = None,
          background: list[Background] | None = None, log_level: str = "info") -> int:
    """Serve until SIGTERM/SIGINT. Raises ConfigError for what an operator must fix first."""
    config.validate()
    reserve_descriptors(config.server.max_connections)
    load_identity(config.node.key)  # fail now, in the parent, on a missing or locked node key
    workers = config.server.workers
    # Several workers each listen on their own SO_REUSEPORT socket, so the kernel spreads connections
    # over them; with one shared socket the first worker to wake accepts a whole burst of connections
    # and keeps them. The parent's socket only reserves the port (it never listens, so it is given none).
    shared = workers == 1 or not _REUSE_PORT
    sock = bind(config.server.host, config.server.port, listen=shared)
    host, port = sock.getsockname()[:2]
    if not shared:  # the plain bind proved the port free (SO_REUSEPORT would share it with anyone's)
        sock.close()
        sock = bind(host, port, reuse_port=True, listen=False)
    logs.setup_logging(log_level)
    logs.event("listening", host=host, port=port, workers=workers)
    if workers == 1:
        _worker(config, 0, sock, preload, background, log_level)
        return 0
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_worker, name=f"synapse-worker-{i}",
                         args=(config, i, sock if shared else (host, port), preload if i == 0 else None,
                               background if i == 0 else None, log_level))
             for i in range(workers)]
    for proc in procs:
        proc.start()

    def forward(signum: int, _frame: FrameType | None) -> None:
        for proc in procs:
            if proc.pid is not None and proc.is_alive():
                os.kill(proc.pid, signal.SIGTERM)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    for proc in procs:
        proc.join()
    sock.close()
    return 0 if all(proc.exitcode == 0 for proc in procs) else 1


def reserve_descriptors(max_connections: int) -> None:
    """Raise the soft RLIMIT_NOFILE (inherited by the workers) to max_connections + FD_RESERVE if it is
    lower; ConfigError when the hard limit does not allow that."""
    need = max_connections + FD_RESERVE
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= need:
        return
    if hard != resource.RLIM_INFINITY and hard < need:
        raise ConfigError(
            f"server.max_connections = {max_connections} needs {need} file descriptors per worker "
            f"({FD_RESERVE} kept for the service's own files), but this process may open only {hard} "
            "(ulimit -n): lower server.max_connections or raise the limit")
    resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))


def _worker(config: ServiceConfig, index: int, listen_on: socket.socket | tuple[str, int],
            preload: list[Path] | None, background: list[Background] | None, log_level: str) -> None:
    logs.setup_logging(log_level)
    # A crash in a native library (wasmtime, sqlite) then leaves every thread's Python stack on stderr
    # (code locations only, no values), instead of a bare "exit -11".
    faulthandler.enable()
    # Before the node key or any decrypted module is in memory; a spawned worker's exec reset it.
    hardened = harden_process()
    logs.event("process_hardened", logging.INFO if hardened.not_dumpable else logging.WARNING, worker=index,
               no_core_file=hardened.no_core_file, not_dumpable=hardened.not_dumpable, notes=hardened.notes)
    sock = listen_on if isinstance(listen_on, socket.socket) else bind(*listen_on, reuse_port=True)
    identity = load_identity(config.node.key)
    service = PolicyService(config, identity, worker=index)
    closing = threading.Event()
    app = create_app(service, preload=preload, background=background, closing=closing)
    # uvicorn re-raises SIGTERM/SIGINT after its graceful shutdown; by then the decision log is sealed,
    # so the process exits 0 instead of dying of the signal.
    signal.signal(signal.SIGTERM, _exit_cleanly)
    signal.signal(signal.SIGINT, _exit_cleanly)
    s = config.server
    protocol = guarded_protocol(ConnectionLimits(
        max_connections=s.max_connections, max_head_bytes=config.limits.max_head_bytes,
        head_timeout=s.head_timeout, body_timeout=s.body_timeout, keep_alive_timeout=s.keep_alive_timeout))
    server = _Server(closing, uvicorn.Config(
        app, http=protocol, ws="none", timeout_keep_alive=s.keep_alive_timeout,  # type: ignore[arg-type]
        log_config=None, access_log=False, lifespan="on", server_header=False,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S, limit_concurrency=None, backlog=2048))
    server.run(sockets=[sock])
    if not server.started:
        sys.exit(1)


class _Server(uvicorn.Server):
    """uvicorn's server that also sets `closing` when a signal asks it to stop: the graceful shutdown
    waits for responses in progress, and the operator page's live streams end only when told to."""

    def __init__(self, closing: threading.Event, config: uvicorn.Config) -> None:
        super().__init__(config)
        self._closing = closing

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self._closing.set()
        super().handle_exit(sig, frame)


def _exit_cleanly(signum: int, _frame: FrameType | None) -> None:
    sys.exit(0)
