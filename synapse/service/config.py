"""The node's configuration: one TOML file read with tomllib, one `ServiceConfig` object, flags on top.

One vocabulary for `synapse serve`, `synapse run` and the artifact loader (`synapse eval --config`):
the same sections and keys (`[ledger] path`, `[node] key`, ...) in every file, and every flag names one
of them (`FLAG_KEYS`). The sections are pydantic models that refuse unknown keys and values of the
wrong TOML type (a misspelt limit must not silently fall back to its default); pydantic's errors
become a ConfigError naming the file, the dotted key and why. Every limit lives here, so what bounds
the node can be read in one place. Relative paths in a config file are relative to that file's
directory; relative paths given as flags are relative to the working directory.
"""

from __future__ import annotations

import argparse
import datetime
import ipaddress
import re
import tomllib
import types
import typing
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PlainValidator, ValidationError, ValidationInfo

from synapse.service.errors import ConfigError

if typing.TYPE_CHECKING:  # imported where used: `synapse eval X.wasm` reads this file and starts fast
    from axon.verify import VerifyConfig

SCOPES = ("admin", "evaluate")
_SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")
_MASK_FIELD = re.compile(r"^(telemetry|context)\.[A-Za-z0-9_.-]{1,64}$")

def _config_path(value: object, info: ValidationInfo) -> Path:
    """A path from a file is relative to the file's directory (the validation context's `base`)."""
    if isinstance(value, Path):  # set in code or from a flag: already relative to the working directory
        return value
    if not isinstance(value, str) or not value:
        raise ValueError("expected a path (a non-empty string)")
    path = Path(value).expanduser()
    base = (info.context or {}).get("base")
    return path if path.is_absolute() or base is None else base / path


ConfigPath = Annotated[Path, PlainValidator(_config_path)]


def _key_location(value: object, info: ValidationInfo) -> Path | str:
    """A key file (as a ConfigPath), or a `pkcs11:` URI naming a key in a token, kept as written."""
    from axon.keys import is_pkcs11_uri
    return value if is_pkcs11_uri(value) else _config_path(value, info)


KeyLocation = Annotated[Path | str, PlainValidator(_key_location)]


class Section(BaseModel):
    """A config table: strict TOML types (no "80" for 80, no true for 1), unknown keys refused; flags and
    code that assign a setting go through the same validation."""

    model_config = ConfigDict(extra="forbid", strict=True, validate_assignment=True)


class ServerConfig(Section):
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


def _ledger_location(value: object, info: ValidationInfo) -> Path | str:
    """A ledger file (as a ConfigPath), or an Ethereum node's http(s):// JSON-RPC URL, kept as written."""
    if isinstance(value, str) and value.lower().startswith(("http://", "https://")):
        return value
    return _config_path(value, info)


LedgerLocation = Annotated[Path | str, PlainValidator(_ledger_location)]


def ledger_argument(text: str) -> Path | str:
    """--ledger: a ledger file, or an Ethereum node's http(s):// URL kept as written (argparse type)."""
    return text if text.lower().startswith(("http://", "https://")) else Path(text)


class LedgerConfig(Section):
    # The ledger file, or an Ethereum node's JSON-RPC URL: the ledger on a chain, followed into a local
    # index that verification reads (docs/fleet.md).
    path: LedgerLocation | None = None
    # Seconds between two checks of the ledger (and of the store, for changes made by other workers):
    # an artifact revoked or superseded on the ledger stops being served within this time (on a chain,
    # plus the time its block takes to get `confirmations` blocks on top).
    follow_interval: float = 5.0
    # With a URL: the index file (default <store>/ledger-index.sqlite), the blocks on top of an operation
    # before it counts (0 only on a dev chain or one with immediate finality), the first block to read.
    index: ConfigPath | None = None
    confirmations: int = 2
    start_block: int = 0
    # Every this many new entries the node signs a checkpoint of the ledger's state with its key and
    # opens from it at start-up instead of replaying all history (docs/ledger.md); 0: never.
    checkpoint_every: int = 10_000

    @property
    def chain_url(self) -> str | None:
        return self.path if isinstance(self.path, str) else None

    def local_file(self, store: Path) -> Path | None:
        """The SQLite file the node reads: the ledger itself, or its index of the chain."""
        if isinstance(self.path, str):
            return self.index or store / "ledger-index.sqlite"
        return self.path


class NodeConfig(Section):
    # Key file of this node (axon.keys), or a pkcs11: URI (a key in a token, docs/keys.md); None means
    # $SOPCOS_KEY. Passphrase from $SOPCOS_KEY_PASSPHRASE.
    key: KeyLocation | None = None
    # {"policy": "version"} installed here, for the rollback check of `synapse eval` (the service keeps
    # its own in the store).
    installed: ConfigPath | None = None


class StoreConfig(Section):
    path: ConfigPath = Path("synapse-store")


class DecisionLogConfig(Section):
    path: ConfigPath = Path("synapse-decisions")
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
    mask: list[str] = Field(default_factory=list)
    # 32-byte HMAC key (hex file) for masking; created 0600 on first use. Keep it apart from the log.
    mask_key: ConfigPath | None = None


class TokenConfig(Section):
    name: str
    sha256: str
    scopes: list[str]


class AuthConfig(Section):
    tokens: list[TokenConfig] = Field(default_factory=list)
    # Evaluation (and read-only listing) without a token. Forced on when no token is configured at all.
    open_evaluate: bool = False
    # Administrative requests signed by a ledger-registered key of at least this level (1..5).
    signed_requests: bool = True
    admin_level: int = 4
    # A signed request's timestamp must be within this many seconds of the server's clock.
    replay_window: float = 300.0


class LimitsConfig(Section):
    max_body_bytes: int = 256 * 1024
    # Request line and headers together (431 beyond).
    max_head_bytes: int = 16 * 1024
    max_artifact_bytes: int = 8 * 1024 * 1024
    # How far in the future an artifact's created_at may be (clocks disagree a little).
    clock_skew_seconds: int = 300
    max_batch: int = 256
    # Token bucket per client address: sustained requests per second and burst size; 0 turns it off.
    rate: float = 5000.0
    burst: int = 10000
    # Wall-clock bound on one evaluation (the sandbox's own gas meter bounds it too).
    eval_timeout_ms: float = 100.0

    def verify_config(self) -> VerifyConfig:
        """Axon's limits for verifying an artifact on this node."""
        from axon.verify import VerifyConfig
        return VerifyConfig(max_artifact_bytes=self.max_artifact_bytes,
                            clock_skew_seconds=self.clock_skew_seconds)


class AlertsConfig(Section):
    """SIP-017 ALERTs (synapse/alerts.py) posted on the ledger, signed by the node key."""

    # Key DIDs or group DIDs (looked up on the ledger, groups expanded to their live members), or
    # public keys in hex.
    recipients: list[str] = Field(default_factory=list)
    verdicts: list[str] = Field(default_factory=lambda: ["DENY", "HALT"])
    repeat_after: float = 300.0
    max_per_window: int = 5
    rate_window: float = 60.0
    include_telemetry: bool = False


class CommandsConfig(Section):
    """SIP-017 CMD messages to this node (synapse/sidecar/plant_commands.py), read from the ledger."""

    enabled: bool = False
    poll_interval: float = 2.0
    max_context_ttl: int = 24 * 3600
    # CMD load of an artifact this node does not hold: seconds allowed to fetch it from its storage_hint
    # (its size is bounded by limits.max_artifact_bytes).
    fetch_timeout: float = 30.0
    # The CA that signed the artifact servers' certificates (https hints); default: the system's CAs.
    fetch_ca_file: ConfigPath | None = None


class SidecarConfig(Section):
    artifacts: list[ConfigPath] = Field(default_factory=list)
    # Policies evaluated on every tick; empty means every policy with an active artifact.
    policies: list[str] = Field(default_factory=list)
    # A JSON-lines file, or "-" for standard input.
    source: str = "-"
    # Seconds between evaluations of the latest telemetry; 0 evaluates every line as it arrives.
    interval: float = 1.0
    # Keep reading a file as it grows (like tail -f); when false, stop at its end.
    follow: bool = True
    # Stop the sidecar (and the service) once the source is exhausted and evaluated.
    exit_at_eof: bool = False
    # Context passed to every evaluation (merged under each line's own context).
    context: dict[str, Any] = Field(default_factory=dict)
    alerts: AlertsConfig | None = None
    commands: CommandsConfig = Field(default_factory=CommandsConfig)


class MqttConfig(Section):
    """SIP-017 messages through an MQTT broker (synapse/sidecar/mqtt.py, docs/messaging.md): alerts out,
    commands and key exchange in, on the topic `<topic_prefix>/to/<recipient's address>` at QoS 1."""

    host: str
    port: int = 1883
    # TLS to the broker, checked against ca_file (the system's CAs when absent); a client certificate
    # when the broker asks for one.
    tls: bool = False
    ca_file: ConfigPath | None = None
    client_cert: ConfigPath | None = None
    client_key: ConfigPath | None = None
    username: str | None = None
    # The broker password, read from this file (never from the config itself): it stays out of logs.
    password_file: ConfigPath | None = None
    topic_prefix: str = "sopcos/v1"
    # Default: sopcos-<node address>, with a persistent session so QoS 1 messages wait at the broker
    # while the node reconnects.
    client_id: str | None = None
    keepalive: int = 30
    # Send the sidecar's alerts here instead of on the ledger; take CMD and KEY_EXCHANGE from here.
    alerts: bool = True
    commands: bool = True
    # Alerts held in memory while the broker is away (the oldest is dropped, and reported, beyond it).
    max_queued_alerts: int = 1000
    # Longest wait between two connection attempts (it doubles from 0.5 s up to this).
    reconnect_max: float = 10.0


# --- the plant: PLC sources, tags, verdicts written back (synapse/plant/, docs/plc.md) ---------------

RegisterType = Literal["int16", "uint16", "int32", "uint32", "float32", "float64"]
Order = Literal["big", "little"]


class ModbusSourceConfig(Section):
    """A Modbus TCP server (a PLC), read and written through pymodbus."""

    kind: Literal["modbus"]
    host: str
    port: int = 502
    unit: int = 1
    # Seconds: a request not answered within this is a timeout (the tags it reads are bad).
    timeout: float = 1.0
    # Default poll period of this source's tags (seconds).
    poll: float = 0.1
    # Longest wait between two connection attempts (it doubles from 0.1 s up to this).
    reconnect_max: float = 5.0


class OpcUaSourceConfig(Section):
    """An OPC UA server, read and written through asyncua."""

    kind: Literal["opcua"]
    url: str
    security: Literal["None", "SignAndEncrypt"] = "None"
    policy: Literal["Basic256Sha256"] = "Basic256Sha256"
    # This client's certificate and key (PEM or DER): required by SignAndEncrypt and certificate login.
    certificate: ConfigPath | None = None
    private_key: ConfigPath | None = None
    # The server's certificate, to check it against (SignAndEncrypt).
    server_certificate: ConfigPath | None = None
    login: Literal["anonymous", "password", "certificate"] = "anonymous"
    username: str | None = None
    # The password, read from this file (never from the config itself).
    password_file: ConfigPath | None = None
    timeout: float = 2.0
    # Default sampling interval (subscriptions) or read period (plain reads) of its tags, seconds.
    poll: float = 0.1
    reconnect_max: float = 5.0


class MqttSourceConfig(Section):
    """Tags in JSON payloads on the node's broker (the [mqtt] section says how to reach it), subscribed at
    QoS 1 on a connection of their own (clean session; retained messages are not taken as readings)."""

    kind: Literal["mqtt"]


PlantSourceConfig = Annotated[ModbusSourceConfig | OpcUaSourceConfig | MqttSourceConfig,
                              Field(discriminator="kind")]


class PlantPointConfig(Section):
    """Where a value lives on a source: Modbus (table, address, unit, type), OPC UA (node) or MQTT (topic)."""

    source: str
    table: Literal["holding", "input", "coil", "discrete"] | None = None
    address: int | None = None
    unit: int | None = None
    # Registers: int16/uint16 (one), int32/uint32/float32 (two), float64 (four); default uint16.
    type: RegisterType | None = None
    byte_order: Order = "big"
    word_order: Order = "big"
    node: str | None = None
    topic: str | None = None


class PlantTagConfig(PlantPointConfig):
    """A value read from the plant: where it lives, how it becomes an input value, how old it may be."""

    # A boolean from one bit (0 = least significant) of a register.
    bit: int | None = None
    # Modbus: seconds between reads of its group; OPC UA: the sampling interval (0: the server's fastest).
    poll: float | None = None
    # OPC UA: a monitored item (true) or a plain read every `poll` (false).
    subscribe: bool = True
    # MQTT: a JSON Pointer into the payload ("" is the whole payload).
    pointer: str = ""
    scale: float = 1.0
    offset: float = 0.0
    # An enum input: the source's integer code or string -> the enum value.
    map: dict[str, str] | None = None
    # Older than this (seconds since the source's timestamp) is missing.
    max_age: float = 5.0


class PlantOutputConfig(PlantPointConfig):
    """A value written back: the verdict code, the permissive bit, or (MQTT) the decision as JSON."""

    value: Literal["verdict", "permissive", "decision"]
    # Verdicts for which the permissive is true.
    permissive_on: list[Literal["ALLOW", "WARN"]] = Field(default_factory=lambda: ["ALLOW"])
    # Written on shutdown and when nothing can be evaluated; default DENY (0) and false.
    safe: int | None = None


class PlantHeartbeatConfig(PlantPointConfig):
    """A counter written every cycle (mod 65536): a PLC that sees it stop knows the sidecar is dead."""


class PlantPolicyConfig(Section):
    # Policy input name -> tag name.
    telemetry: dict[str, str] = Field(default_factory=dict)
    context: dict[str, str] = Field(default_factory=dict)
    outputs: list[PlantOutputConfig] = Field(default_factory=list)


class PlantConfig(Section):
    """PLC sources and tags in place of the feed; verdicts written back (docs/plc.md)."""

    # Seconds between two cycles (a snapshot, a heartbeat); a changed value is evaluated at once too.
    cycle: float = 0.1
    # Seconds: every policy is evaluated at least this often, changed or not.
    period: float = 1.0
    # Evaluate and log, write nothing (`synapse run --dry-run`).
    dry_run: bool = False
    sources: dict[str, PlantSourceConfig] = Field(default_factory=dict)
    tags: dict[str, PlantTagConfig] = Field(default_factory=dict)
    policies: dict[str, PlantPolicyConfig] = Field(default_factory=dict)
    heartbeat: PlantHeartbeatConfig | None = None


class ServiceConfig(Section):
    server: ServerConfig = Field(default_factory=ServerConfig)
    ledger: LedgerConfig = Field(default_factory=LedgerConfig)
    node: NodeConfig = Field(default_factory=NodeConfig)
    store: StoreConfig = Field(default_factory=StoreConfig)
    decision_log: DecisionLogConfig = Field(default_factory=DecisionLogConfig)
    auth: AuthConfig = Field(default_factory=AuthConfig)
    limits: LimitsConfig = Field(default_factory=LimitsConfig)
    sidecar: SidecarConfig = Field(default_factory=SidecarConfig)
    mqtt: MqttConfig | None = None
    plant: PlantConfig | None = None

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
        _require(self.ledger.confirmations >= 0 and self.ledger.start_block >= 0,
                 "ledger.confirmations and ledger.start_block must be >= 0")
        _require(self.ledger.checkpoint_every >= 0, "ledger.checkpoint_every must be >= 0")
        _require(lim.max_body_bytes >= 64, "limits.max_body_bytes must be at least 64")
        _require(lim.max_head_bytes >= 1024, "limits.max_head_bytes must be at least 1024")
        _require(lim.max_artifact_bytes >= 64, "limits.max_artifact_bytes must be at least 64")
        _require(lim.clock_skew_seconds >= 0, "limits.clock_skew_seconds must be >= 0")
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
        _require(self.sidecar.commands.fetch_timeout > 0, "sidecar.commands.fetch_timeout must be > 0")
        if self.mqtt is not None:
            m = self.mqtt
            _require(1 <= m.port <= 65535, "mqtt.port must be 1..65535")
            _require(bool(re.fullmatch(r"[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*", m.topic_prefix)),
                     "mqtt.topic_prefix must be topic levels of letters, digits, _ . - separated by /")
            _require(5 <= m.keepalive <= 3600, "mqtt.keepalive must be 5..3600 seconds")
            _require(m.max_queued_alerts >= 1, "mqtt.max_queued_alerts must be at least 1")
            _require(m.reconnect_max >= 0.5, "mqtt.reconnect_max must be >= 0.5 seconds")
            _require((m.client_cert is None) == (m.client_key is None),
                     "mqtt.client_cert and mqtt.client_key go together")
        if self.plant is not None:
            from synapse.plant.points import check_plant  # the plant's own cross-checks, with their words

            check_plant(self.plant, has_broker=self.mqtt is not None)
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
    if path is None:
        return ServiceConfig()
    path = Path(path)
    try:
        with path.open("rb") as fh:
            doc = tomllib.load(fh)
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from exc
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    try:
        return ServiceConfig.model_validate(doc, context={"base": path.resolve().parent})
    except ValidationError as exc:
        raise ConfigError(f"{path}: {_explain(exc)}") from None


# Flag (its argparse dest) -> the section.key it sets; a flag given wins over the file.
FLAG_KEYS = {
    "host": "server.host", "port": "server.port", "workers": "server.workers",
    "max_connections": "server.max_connections", "head_timeout": "server.head_timeout",
    "keep_alive_timeout": "server.keep_alive_timeout", "access_log": "server.access_log",
    "ledger": "ledger.path", "follow_interval": "ledger.follow_interval", "node_key": "node.key",
    "store": "store.path", "decision_log": "decision_log.path", "max_body_bytes": "limits.max_body_bytes",
    "rate": "limits.rate", "burst": "limits.burst", "eval_timeout_ms": "limits.eval_timeout_ms",
    "open_evaluate": "auth.open_evaluate", "source": "sidecar.source", "interval": "sidecar.interval",
}


def apply_flags(config: ServiceConfig, args: argparse.Namespace) -> ServiceConfig:
    """Set every FLAG_KEYS setting whose flag was given (a parser defines only the flags it offers)."""
    for dest, dotted in FLAG_KEYS.items():
        value = getattr(args, dest, None)
        if value is None:
            continue
        section, key = dotted.split(".")
        try:
            setattr(getattr(config, section), key, value)
        except ValidationError as exc:
            raise ConfigError(f"--{dest.replace('_', '-')}: {_explain(exc, prefix=(section,))}") from None
    return config


_EXPECTED = {  # pydantic error type -> what the key takes
    "int_type": "an integer", "float_type": "a number", "bool_type": "true or false",
    "string_type": "a string", "list_type": "a list", "dict_type": "a table", "model_type": "a table",
}


def _explain(exc: ValidationError, prefix: tuple[str, ...] = ()) -> str:
    """Pydantic's first error as one sentence: the dotted key, then what is wrong with it. The value itself
    is named only by its TOML type: a config file may hold things that do not belong in a log."""
    error = exc.errors(include_url=False)[0]
    loc = (*prefix, *error["loc"])
    where, parent, kind = _dotted(loc), _dotted(loc[:-1]), error["type"]
    if kind == "extra_forbidden":
        model = _model_at(loc[:-1])
        known = ", ".join(model.model_fields) if model else "none"
        if len(loc) == 1:
            return f"unknown section [{loc[0]}] (known: {known})"
        return f"{where}: unknown key {loc[-1]!r} in {parent} (known: {known})"
    if kind == "missing":
        return f"{parent or 'the file'}: missing {loc[-1]} (required)"
    if kind in _EXPECTED:
        table = f" ([{where}] is a section)" if len(loc) == 1 else ""
        return f"{where}: expected {_EXPECTED[kind]}, got {_toml_type(error['input'])}{table}"
    if kind == "value_error":
        return f"{where}: {error['ctx']['error']}"
    return f"{where}: {error['msg'][0].lower()}{error['msg'][1:]}"


def _dotted(loc: tuple[str | int, ...]) -> str:
    return "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in loc).lstrip(".")


def _model_at(loc: tuple[str | int, ...]) -> type[BaseModel] | None:
    """The section model at a location (None when the location is not a table)."""
    hint: Any = ServiceConfig
    for part in loc:
        if not isinstance(part, int) and hint is not None:
            hint = _step(hint, part)
    return _section_type(hint)


def _step(hint: Any, part: str) -> Any:
    """The type at `part` inside `hint`: a named entry of a table of tables (dict), the member of a
    union its `kind` names (how pydantic locates a discriminated union), or a model's field."""
    members = _members(hint)
    for member in members:
        if typing.get_origin(member) is dict:
            return typing.get_args(member)[1]
    models = [m for m in members if isinstance(m, type) and issubclass(m, BaseModel)]
    for model in models:
        kind = model.model_fields.get("kind")
        if kind is not None and typing.get_args(kind.annotation) == (part,):
            return model
    return next((m.model_fields[part].annotation for m in models if part in m.model_fields), None)


def _members(hint: Any) -> list[Any]:
    """A hint with Annotated, Optional, unions and lists taken apart."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType, list, typing.Annotated):
        return [m for arg in typing.get_args(hint) for m in _members(arg)]
    return [hint]


def _section_type(hint: Any) -> type[BaseModel] | None:
    return next((m for m in _members(hint) if isinstance(m, type) and issubclass(m, BaseModel)), None)


def _toml_type(value: object) -> str:
    kinds = [(bool, "a boolean"), (int, "an integer"), (float, "a number"), (str, "a string"),
             (list, "an array"), (dict, "a table"), (datetime.date | datetime.time, "a date or time")]
    return next((name for kind, name in kinds if isinstance(value, kind)), "another type")
