"""The service's configuration: one TOML file read with tomllib, one `ServiceConfig` object, flags on top.

Every limit lives here, so what bounds the service can be read in one place. Relative paths in a
config file are relative to that file's directory; relative paths given as flags are relative to the
working directory. Unknown sections or keys are errors (a misspelt limit must not silently fall back
to its default).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from synapse.service.errors import ConfigError

SCOPES = ("admin", "evaluate")
_SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")
_MASK_FIELD = re.compile(r"^(telemetry|context)\.[A-Za-z0-9_.-]{1,64}$")


@dataclass
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 8080
    # Worker processes sharing one listening socket; each keeps its own decision-log stream.
    workers: int = 1
    # One JSON log line per successful request too (errors and admin actions are always logged).
    access_log: bool = False
    # POST /v1/noop: validates an evaluation request and does nothing else. A baseline for load tests.
    noop_endpoint: bool = False
    # Open connections per worker; over it the least recently active one waiting for its client is
    # closed, else the new one gets 503. Kept well under the file-descriptor limit (checked at start),
    # so clients can never starve the ledger follower of descriptors.
    max_connections: int = 512
    # Seconds: a request head must be complete this long after its first byte (408), a body this long
    # after its head (the connection is closed); a connection with no request is closed after
    # keep_alive_timeout, a new one included.
    head_timeout: float = 10.0
    body_timeout: float = 30.0
    keep_alive_timeout: float = 5.0


@dataclass
class LedgerConfig:
    path: Path | None = None
    # Seconds between two checks of the ledger (and of the store, for changes made by other workers):
    # an artifact revoked or superseded on the ledger stops being served within this time.
    follow_interval: float = 5.0


@dataclass
class NodeConfig:
    # Key file of this node (axon.keys); None means $SOPCOS_KEY. Passphrase from $SOPCOS_KEY_PASSPHRASE.
    key: Path | None = None


@dataclass
class StoreConfig:
    path: Path = Path("synapse-store")


@dataclass
class DecisionLogConfig:
    path: Path = Path("synapse-decisions")
    rotate_bytes: int = 64 * 1024 * 1024
    # A seal (signature by the node key over the chain head) after this many records or seconds.
    seal_every: int = 1000
    seal_interval: float = 60.0
    # With a ledger: its latest seal anchored there (LOG_ANCHOR) after this many records or seconds.
    anchor_every: int = 100_000
    anchor_interval: float = 300.0
    # Records are written and flushed to the OS at once; fsync happens at least this often.
    fsync_interval: float = 1.0
    # Fields written as an HMAC-SHA256 digest, never as their value: "telemetry.NAME", "context.NAME".
    mask: list[str] = field(default_factory=list)
    # 32-byte HMAC key (hex file) for masking; created 0600 on first use. Keep it apart from the log.
    mask_key: Path | None = None


@dataclass
class TokenConfig:
    name: str
    sha256: str
    scopes: list[str]


@dataclass
class AuthConfig:
    tokens: list[TokenConfig] = field(default_factory=list)
    # Evaluation (and read-only listing) without a token. Forced on when no token is configured at all.
    open_evaluate: bool = False
    # Administrative requests signed by a ledger-registered key of at least this level (1..5).
    signed_requests: bool = True
    admin_level: int = 4
    # A signed request's timestamp must be within this many seconds of the server's clock.
    replay_window: float = 300.0


@dataclass
class LimitsConfig:
    max_body_bytes: int = 256 * 1024
    # Request line and headers together (431 beyond).
    max_head_bytes: int = 16 * 1024
    max_artifact_bytes: int = 8 * 1024 * 1024
    max_batch: int = 256
    # Token bucket per client address: sustained requests per second and burst size; 0 turns it off.
    rate: float = 5000.0
    burst: int = 10000
    # Wall-clock bound on one evaluation (the sandbox's own gas meter bounds it too).
    eval_timeout_ms: float = 100.0


@dataclass
class AlertsConfig:
    """SIP-017 ALERTs (synapse/alerts.py) posted on the ledger, signed by the node key."""

    # Key DIDs or group DIDs (looked up on the ledger, groups expanded to their live members), or
    # public keys in hex.
    recipients: list[str] = field(default_factory=list)
    verdicts: list[str] = field(default_factory=lambda: ["DENY", "HALT"])
    repeat_after: float = 300.0
    max_per_window: int = 5
    rate_window: float = 60.0
    include_telemetry: bool = False


@dataclass
class CommandsConfig:
    """SIP-017 CMD messages to this node (synapse/commands_inbox.py), read from the ledger."""

    enabled: bool = False
    poll_interval: float = 2.0
    max_context_ttl: int = 24 * 3600


@dataclass
class SidecarConfig:
    artifacts: list[Path] = field(default_factory=list)
    # Policies evaluated on every tick; empty means every policy with an active artifact.
    policies: list[str] = field(default_factory=list)
    # A JSON-lines file, or "-" for standard input.
    source: str = "-"
    # Seconds between evaluations of the latest telemetry; 0 evaluates every line as it arrives.
    interval: float = 1.0
    # Keep reading a file as it grows (like tail -f); when false, stop at its end.
    follow: bool = True
    # Stop the sidecar (and the service) once the source is exhausted and evaluated.
    exit_at_eof: bool = False
    # Context passed to every evaluation (merged under each line's own context).
    context: dict[str, Any] = field(default_factory=dict)
    alerts: AlertsConfig | None = None
    commands: CommandsConfig = field(default_factory=CommandsConfig)


@dataclass
class ServiceConfig:
    server: ServerConfig = field(default_factory=ServerConfig)
    ledger: LedgerConfig = field(default_factory=LedgerConfig)
    node: NodeConfig = field(default_factory=NodeConfig)
    store: StoreConfig = field(default_factory=StoreConfig)
    decision_log: DecisionLogConfig = field(default_factory=DecisionLogConfig)
    auth: AuthConfig = field(default_factory=AuthConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    sidecar: SidecarConfig = field(default_factory=SidecarConfig)

    @property
    def is_loopback(self) -> bool:
        return is_loopback_host(self.server.host)

    @property
    def auth_configured(self) -> bool:
        """True when administrative requests can be authenticated at all."""
        return bool(self.auth.tokens) or (self.auth.signed_requests and self.ledger.path is not None)

    @property
    def evaluate_open(self) -> bool:
        return self.auth.open_evaluate or not self.auth.tokens

    def validate(self) -> ServiceConfig:
        """Cross-field checks; returns self so callers can chain."""
        s, lim, log = self.server, self.limits, self.decision_log
        _require(0 <= s.port <= 65535, "server.port must be 0..65535")
        _require(1 <= s.workers <= 64, "server.workers must be 1..64")
        _require(s.max_connections >= 1, "server.max_connections must be at least 1")
        _require(s.head_timeout > 0 and s.body_timeout > 0 and s.keep_alive_timeout > 0,
                 "server.head_timeout, body_timeout and keep_alive_timeout must be > 0 seconds")
        _require(self.ledger.follow_interval > 0, "ledger.follow_interval must be > 0 seconds")
        _require(lim.max_body_bytes >= 64, "limits.max_body_bytes must be at least 64")
        _require(lim.max_head_bytes >= 1024, "limits.max_head_bytes must be at least 1024")
        _require(lim.max_artifact_bytes >= 64, "limits.max_artifact_bytes must be at least 64")
        _require(lim.max_batch >= 1, "limits.max_batch must be at least 1")
        _require(lim.rate >= 0 and lim.burst >= 1, "limits.rate must be >= 0 and limits.burst >= 1")
        _require(lim.eval_timeout_ms > 0, "limits.eval_timeout_ms must be > 0")
        _require(log.rotate_bytes >= 4096, "decision_log.rotate_bytes must be at least 4096")
        _require(log.seal_every >= 1 and log.seal_interval > 0,
                 "decision_log.seal_every and seal_interval must be > 0")
        _require(log.fsync_interval > 0, "decision_log.fsync_interval must be > 0")
        _require(log.anchor_every >= 1 and log.anchor_interval > 0,
                 "decision_log.anchor_every and anchor_interval must be > 0")
        for name in log.mask:
            _require(bool(_MASK_FIELD.match(name)),
                     f"decision_log.mask entry {name!r} must be 'telemetry.NAME' or 'context.NAME'")
        _require(1 <= self.auth.admin_level <= 5, "auth.admin_level must be 1..5")
        _require(self.auth.replay_window > 0, "auth.replay_window must be > 0 seconds")
        seen = set()
        for tok in self.auth.tokens:
            _require(bool(_SHA256_HEX.match(tok.sha256)),
                     f"auth token {tok.name!r}: sha256 must be 64 lowercase hex digits (the token's hash)")
            _require(bool(tok.scopes) and all(sc in SCOPES for sc in tok.scopes),
                     f"auth token {tok.name!r}: scopes must be a non-empty subset of {list(SCOPES)}")
            _require(tok.sha256 not in seen, f"auth token {tok.name!r}: the same token is listed twice")
            seen.add(tok.sha256)
        _require(self.sidecar.interval >= 0, "sidecar.interval must be >= 0 seconds")
        _require(self.sidecar.commands.poll_interval > 0, "sidecar.commands.poll_interval must be > 0")
        if not self.is_loopback and not self.auth_configured:
            raise ConfigError(
                f"refusing to bind {s.host}: only loopback addresses may be served without authentication; "
                "configure [[auth.tokens]] or a ledger for signed requests")
        if not self.is_loopback and not self.auth.tokens and not self.auth.open_evaluate:
            raise ConfigError(
                f"refusing to bind {s.host} with evaluation open to the network by default: configure "
                "[[auth.tokens]] with the evaluate scope, or say auth.open_evaluate = true")
        return self


def is_loopback_host(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


# --- loading ------------------------------------------------------------------------------------


def load_config(path: str | Path | None) -> ServiceConfig:
    """Read a TOML config file (None gives the defaults). Raises ConfigError naming file, key and reason."""
    cfg = ServiceConfig()
    if path is None:
        return cfg
    path = Path(path)
    try:
        with path.open("rb") as fh:
            doc = tomllib.load(fh)
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    base = path.resolve().parent
    for section, table in doc.items():
        target = getattr(cfg, section, None) if section in _SECTIONS else None
        if target is None:
            raise ConfigError(f"{path}: unknown section [{section}] (known: {', '.join(_SECTIONS)})")
        if not isinstance(table, dict):
            raise ConfigError(f"{path}: [{section}] must be a table")
        _fill(target, table, f"{path}: [{section}]", base)
    return cfg


_SECTIONS = [f.name for f in dataclasses.fields(ServiceConfig)]


def _fill(target: Any, table: dict[str, Any], where: str, base: Path) -> None:
    hints = typing.get_type_hints(type(target))
    for key, value in table.items():
        if key not in hints:
            known = ", ".join(f.name for f in dataclasses.fields(target))
            raise ConfigError(f"{where}: unknown key {key!r} (known: {known})")
        setattr(target, key, _convert(value, hints[key], f"{where} {key}", base))


def _convert(value: Any, hint: Any, where: str, base: Path) -> Any:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType) and type(None) in args:
        inner = next(a for a in args if a is not type(None))
        return _convert(value, inner, where, base)
    if hint is Path:
        if not isinstance(value, str) or not value:
            raise ConfigError(f"{where}: expected a path (a non-empty string)")
        p = Path(value).expanduser()
        return p if p.is_absolute() else base / p
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{where}: expected a number")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string")
        return value
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list")
        return [_convert(v, args[0], f"{where}[{i}]", base) for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a table")
        return dict(value)
    if dataclasses.is_dataclass(hint):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a table")
        names = {f.name for f in dataclasses.fields(hint)}
        missing = [f.name for f in dataclasses.fields(hint)
                   if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
                   and f.name not in value]
        if missing:
            raise ConfigError(f"{where}: missing {', '.join(missing)}")
        extra = sorted(set(value) - names)
        if extra:
            raise ConfigError(f"{where}: unknown key {extra[0]!r} (known: {', '.join(sorted(names))})")
        sub = typing.get_type_hints(hint)
        return hint(**{k: _convert(v, sub[k], f"{where}.{k}", base) for k, v in value.items()})
    raise ConfigError(f"{where}: unsupported setting type")  # a programming error in this module
