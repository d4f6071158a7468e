"""`synapse serve`: the REST policy service (docs/service.md)."""

from __future__ import annotations

import argparse
from pathlib import Path

from axon.clikit import EXIT_OK, UsageError
from axon.keys import KeyFileError, key_location
from synapse.hardening import harden_process
from synapse.service.auth import hash_token, new_token
from synapse.service.config import SCOPES, ServiceConfig, apply_flags, ledger_argument, load_config
from synapse.service.errors import ServiceError

HELP = """Serve policy evaluation over HTTP: POST /v1/evaluate, artifact upload and lifecycle, /healthz,
/readyz, /metrics, OpenAPI at /docs and /openapi.json (docs/service.md).

Settings come from --config (TOML); flags override it. Without a config the service listens on
127.0.0.1:8080 and keeps its store and decision log in ./synapse-store and ./synapse-decisions. It
binds a non-loopback address only when authentication is configured.

The node key (--node-key, or $SOPCOS_KEY) decrypts encrypted artifacts and signs the decision log's
seals; its passphrase, if any, comes from $SOPCOS_KEY_PASSPHRASE.

  synapse serve --ledger ledger.db --node-key node.key --artifact boiler-guard.sop
  synapse serve --config service.toml --workers 2
  synapse serve --new-token ci --scope evaluate     print a token and its config entry, then exit

Exit status: 0 after a clean shutdown (SIGTERM/SIGINT), 1 if a worker failed, 2 for a usage,
configuration or key error.
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("serve", help="run the REST policy service", description=HELP,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    add_service_arguments(parser)
    parser.add_argument("--artifact", metavar="SOP", action="append", type=Path, default=[],
                        help="load this .sop at start (through Axon; repeatable)")
    parser.add_argument("--new-token", metavar="NAME",
                        help="print a new random token and the [[auth.tokens]] entry holding its hash; exit")
    parser.add_argument("--scope", choices=SCOPES, action="append",
                        help="scope of --new-token (repeatable; default evaluate)")
    parser.set_defaults(run=run)


def add_service_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags `serve` and `run` share; each sets the config key FLAG_KEYS names, over the file's."""
    parser.add_argument("--config", metavar="TOML", type=Path, help="configuration file")
    parser.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port (default 8080; 0 picks a free one)")
    parser.add_argument("--workers", type=int, help="worker processes (default 1)")
    parser.add_argument("--max-connections", type=int, metavar="N",
                        help="open connections per worker (default 512); beyond it idle ones are closed")
    parser.add_argument("--head-timeout", type=float, metavar="S",
                        help="seconds a request head may take after its first byte (default 10)")
    parser.add_argument("--keep-alive-timeout", type=float, metavar="S",
                        help="seconds a connection may stay open with no request (default 5)")
    parser.add_argument("--ledger", metavar="PATH|URL", type=ledger_argument,
                        help="the ledger: a SQLite file, or an Ethereum node's URL (docs/fleet.md)")
    parser.add_argument("--node-key", metavar="FILE", type=key_location,
                        help="this node's key file, or a pkcs11: URI (a key in a token)")
    parser.add_argument("--store", metavar="DIR", type=Path, help="artifact store directory")
    parser.add_argument("--decision-log", metavar="DIR", type=Path, help="decision log directory")
    parser.add_argument("--follow-interval", type=float, metavar="S",
                        help="seconds between ledger checks (revocations stop being served within this)")
    parser.add_argument("--max-body-bytes", type=int, metavar="N", help="largest request body")
    parser.add_argument("--rate", type=float, metavar="R", help="requests per second per client (0: off)")
    parser.add_argument("--burst", type=int, metavar="N", help="rate limiter burst")
    parser.add_argument("--eval-timeout-ms", type=float, metavar="MS", help="wall-clock bound per evaluation")
    parser.add_argument("--open-evaluate", action="store_true", default=None,
                        help="allow evaluation without a token")
    parser.add_argument("--access-log", action="store_true", default=None,
                        help="log every request, not only errors and administration")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])


def config_from_args(args: argparse.Namespace) -> ServiceConfig:
    """The config file's settings, each flag given (service.config.FLAG_KEYS) on top."""
    try:
        return apply_flags(load_config(args.config), args)
    except ServiceError as exc:
        raise UsageError(exc.message) from None


def start(config: ServiceConfig, args: argparse.Namespace, **kwargs: object) -> int:
    """Validate, then serve; every operator error becomes a UsageError (exit 2)."""
    from synapse.api.server import serve  # the HTTP stack loads only when a server is wanted

    harden_process()  # this process reads the node key; each worker hardens itself too (and logs how)
    try:
        return serve(config, log_level=args.log_level, **kwargs)  # type: ignore[arg-type]
    except (ServiceError, KeyFileError) as exc:
        raise UsageError(str(exc)) from None


def run(args: argparse.Namespace) -> int:
    if args.new_token:
        scopes = sorted(set(args.scope or ["evaluate"]))
        token = new_token()
        print(f"token (give it to the client; it is not stored anywhere): {token}\n")
        print("[[auth.tokens]]")
        print(f'name = "{args.new_token}"')
        print(f'sha256 = "{hash_token(token)}"')
        print("scopes = [" + ", ".join(f'"{s}"' for s in scopes) + "]")
        return EXIT_OK
    config = config_from_args(args)
    return start(config, args, preload=list(args.artifact))
