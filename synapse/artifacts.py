"""Synapse runs only verified artifacts (SIP-009 §8): `.sop` in, Axon's verdict, then an evaluator.

`load_verified` hands the artifact's bytes to an `axon.verify.Verifier` and builds the evaluator from
the module bytes Axon returns, in memory (an encrypted one decrypted into locked pages, wiped once
compiled: synapse/hardening.py): a decrypted module is never written anywhere, and the
sandbox's wasmtime engine has no compilation cache (wasmtime's cache is off unless a Config asks for
it, and synapse/sandbox.py never does), so no compiled form of it reaches the disk either.

For the command line, `add_arguments` adds --ledger/--node-key/--config to a parser, `read_settings`
reads them, and `open_for_cli` opens what the user named: a `.sop` through Axon, a raw `.wasm` only
with a notice on stderr that it is for development and unverified.

The config file is the node's (synapse/service/config.py, the same file `synapse serve` and `synapse
run` read); the loader uses [ledger] path, [node] key and installed, [limits] max_artifact_bytes and
clock_skew_seconds, and the flags win over it:

    [ledger]
    path = "/var/lib/sopcos/ledger.db"          # the ledger Axon checks keys and artifacts against
    [node]
    key = "/etc/sopcos/node.key"                # this node's key, to decrypt artifacts sent to it
    installed = "/var/lib/sopcos/installed.json"  # {"policy": "version"}: refuse rollbacks
    [limits]
    max_artifact_bytes = 8388608
    clock_skew_seconds = 300
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from axon.errors import AxonError
from synapse.errors import ModuleUnreadable, SynapseError
from synapse.evaluate import Evaluator
from synapse.hardening import harden_process, locked_bytearray, wipe
from synapse.loader import open_module
from synapse.sandbox import Limits
from synapse.service.errors import ConfigError

if TYPE_CHECKING:  # Axon's verifier, ledger and keys, and the config file's models, load only when used:
    # `synapse eval X.wasm` starts without them (issue 15)
    from axon.keys import Identity
    from axon.ledger import Ledger
    from axon.verify import InstalledVersions, VerifiedArtifact, Verifier, VerifyError
    from synapse.service.config import ServiceConfig

# axon.keys.KEY_ENV, named here without importing the key libraries (tests/test_startup.py checks they agree)
KEY_ENV = "SOPCOS_KEY"

ARTIFACT_SUFFIX = ".sop"
DEV_NOTICE = ("synapse: development only: {path} is a raw, unverified module (no signature, no ledger "
              "check); production nodes run signed .sop artifacts")


class ArtifactRefused(SynapseError):
    """Axon refused the artifact; `.verify_error` is its VerifyError (with its stable code)."""

    code = "SYNAPSE-ARTIFACT-REFUSED"

    def __init__(self, verify_error: VerifyError) -> None:
        super().__init__(f"artifact refused: {verify_error}", code=verify_error.code)
        self.verify_error = verify_error


class ArtifactSetupError(SynapseError):
    """The ledger, node key or config file needed to verify an artifact cannot be used."""

    code = "SYNAPSE-ARTIFACT-SETUP"


def load_verified(source: str | Path | bytes, verifier: Verifier, *,
                  installed: InstalledVersions | None = None, limits: Limits | None = None,
                  clock: Callable[[], float] = time.time) -> tuple[VerifiedArtifact, Evaluator]:
    """Verify a `.sop` (a path or its bytes) and build its evaluator from the module in memory.

    Raises ArtifactRefused (nothing is compiled or run) when any Axon check fails.
    """
    from axon.verify import VerifyError
    if isinstance(source, bytes | bytearray):
        data = bytes(source)
    else:
        try:
            data = Path(source).read_bytes()
        except OSError as exc:
            raise ModuleUnreadable(f"cannot read artifact {str(source)!r}: {exc.strerror or exc}") from None
    try:
        verified = verifier.verify(data, installed)
    except VerifyError as exc:
        raise ArtifactRefused(exc) from None
    try:
        return verified, Evaluator.from_wasm(verified.module, limits=limits, clock=clock)
    finally:
        if isinstance(verified.module, bytearray):  # decrypted into locked memory: compiled, now wiped
            wipe(verified.module)


# -- command line ------------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("signed artifacts (.sop)")
    group.add_argument("--ledger", metavar="PATH|URL", type=_ledger_argument,
                       help="ledger to verify the artifact against (a file, or an Ethereum node's URL)")
    group.add_argument("--node-key", "--key", dest="node_key", metavar="KEYFILE", type=_key_location,
                       help=f"this node's key, to decrypt artifacts encrypted for it (default ${KEY_ENV})")
    group.add_argument("--config", metavar="FILE.toml", type=Path,
                       help="the node's config file ([ledger], [node], [limits]; docs/service.md)")


def _ledger_argument(text: str) -> str | Path:
    from synapse.service.config import ledger_argument  # only when --ledger is given: a .sop needs it
    return ledger_argument(text)


def _key_location(text: str) -> str | Path:
    from axon.keys import key_location
    return key_location(text)


def needs_settings(args: argparse.Namespace) -> bool:
    """Whether opening `args.module` needs the node's settings: a .sop does (ledger, key, limits); a raw
    module only when a config file or a limit flag is given (read_settings checks them)."""
    return (str(args.module).endswith(ARTIFACT_SUFFIX)
            or any(getattr(args, flag, None) is not None for flag in ("config", "eval_timeout_ms")))


def read_settings(args: argparse.Namespace) -> ServiceConfig:
    """The config file's settings (the defaults without one), the flags given on top, checked as
    `synapse serve` checks them: one file, one set of rules."""
    from synapse.service.config import apply_flags, load_config
    try:
        return apply_flags(load_config(getattr(args, "config", None)), args).validate()
    except ConfigError as exc:
        raise ArtifactSetupError(exc.message) from None


def _node_identity(settings: ServiceConfig) -> Identity | None:
    from axon.keys import load_identity
    if settings.node.key is None and not os.environ.get(KEY_ENV):
        return None
    try:
        return load_identity(settings.node.key)
    except AxonError as exc:
        raise ArtifactSetupError(f"node key: {exc}") from None


def _installed(settings: ServiceConfig) -> InstalledVersions | None:
    from axon.verify import InstalledVersions
    installed = settings.node.installed
    if installed is None or not installed.exists():
        return None
    try:
        return InstalledVersions.from_json(installed.read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise ArtifactSetupError(f"cannot read installed versions {installed}: {exc}") from None


def open_verifier(settings: ServiceConfig, now: Callable[[], float] = time.time) -> tuple[Verifier, Ledger]:
    from axon.ledger import Ledger
    from axon.verify import Verifier
    path = settings.ledger.path
    if path is None:
        raise ArtifactSetupError("a .sop artifact is verified against a ledger: give --ledger PATH "
                                 "(or [ledger] path = ... in --config)")
    if isinstance(path, str):  # an Ethereum node's URL: its index, caught up first (docs/fleet.md)
        ledger = _chain_ledger(settings, path)
    elif not path.exists():
        raise ArtifactSetupError(f"ledger {path} does not exist")
    else:
        try:
            ledger = Ledger.open(path)
        except AxonError as exc:
            raise ArtifactSetupError(f"cannot open ledger {path}: {exc}") from None
    verifier = Verifier(ledger, settings.limits.verify_config(), _node_identity(settings), now,
                        plaintext=locked_bytearray)
    return verifier, ledger


def _chain_ledger(settings: ServiceConfig, url: str) -> Ledger:
    """A one-shot command's index of the chain: [ledger] index, else the one the axon CLI keeps."""
    from axon.commands.loaders import chain_index_path
    from axon.ledger.chain import ChainLedger

    cfg = settings.ledger
    try:
        return ChainLedger.connect_followed(url, chain_index_path(url, cfg.index),
                                            confirmations=cfg.confirmations, start_block=cfg.start_block)
    except AxonError as exc:
        raise ArtifactSetupError(f"cannot follow the ledger on {url}: {exc}") from None


def open_for_cli(module: str, settings: ServiceConfig | None, limits: Limits | None = None) -> Evaluator:
    """The evaluator for `module`: a `.sop` verified by Axon (`settings` required), or a raw module with a
    notice."""
    path = str(module)
    if not path.endswith(ARTIFACT_SUFFIX):
        print(DEV_NOTICE.format(path=path), file=sys.stderr)
        return open_module(path, limits=limits)
    if settings is None:
        raise ArtifactSetupError("a .sop artifact is opened with the node's settings (a bug: none given)")
    harden_process()  # before the node key is read or the module decrypted (docs/artifacts.md)
    verifier, ledger = open_verifier(settings)
    try:
        verified, evaluator = load_verified(path, verifier, installed=_installed(settings), limits=limits)
    finally:
        ledger.close()
    print(f"synapse: verified {verified.policy} {verified.version} ({verified.urn}) signed by {verified.kid}"
          + (", decrypted in memory" if verified.encrypted else ""), file=sys.stderr)
    return evaluator
