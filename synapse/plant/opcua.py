"""OPC UA through asyncua (the only module that imports it): subscriptions and plain reads, writes of
declared nodes, security None or SignAndEncrypt (Basic256Sha256, the server checked against its
configured certificate), and anonymous, user/password or certificate login.

Tags with `subscribe = true` (the default) are monitored items, sampled at their `poll` (the source's by
default) and grouped into one subscription per sampling interval; the others are read every `poll`.
A sample carries the server's StatusCode (anything not Good is bad quality, named) and its
SourceTimestamp (the server's, else the arrival time): a value is as fresh as the device says. The
connection is watched by reading the server's state every poll: a failure, a subscription status
change or a lost session makes every tag bad at once, then the source reconnects with backoff.
Writes use the node's own data type (read once per node): an Int16 verdict node takes an Int16.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from asyncua import Client, ua
from asyncua.crypto.security_policies import SecurityPolicyBasic256Sha256

from synapse.plant.core import Sample, TagTable, bad, sample_of
from synapse.plant.sources import (
    Clock,
    PlantWriteFailed,
    ReconnectingSource,
    StateListener,
    raise_if_cancelled,
)
from synapse.service.config import OpcUaSourceConfig, PlantPointConfig, PlantTagConfig
from synapse.service.errors import ConfigError

log = logging.getLogger("synapse.plant.opcua")
_SERVER_STATE = ua.NodeId(ua.ObjectIds.Server_ServerStatus_State)


class _Changes:
    """asyncua's subscription handler: data changes into samples, a status change into a loss."""

    def __init__(self, source: OpcUaSource, table: TagTable, names: dict[Any, str]) -> None:
        self.source, self.table, self.names = source, table, names
        self.lost: str | None = None

    def datachange_notification(self, node: Any, value: Any, data: Any) -> None:
        name = self.names.get(node)
        if name is not None:
            self.table.put(name, self.source.sample(name, data.monitored_item.Value))

    def status_change_notification(self, status: Any) -> None:
        code = getattr(status, "Status", status)
        self.lost = f"subscription status {getattr(code, 'name', code)}"


class OpcUaSource(ReconnectingSource[Client]):
    """An OPC UA server: see the module docstring and sources.Source."""

    def __init__(self, name: str, config: OpcUaSourceConfig, tags: Mapping[str, PlantTagConfig], *,
                 on_state: StateListener | None = None, clock: Clock = time.time) -> None:
        self.name = name
        self.config = config
        self.tags = dict(tags)
        self._on_state = on_state
        self._clock = clock
        self._client: Client | None = None
        self._types: dict[str, ua.VariantType] = {}
        self.received = 0  # data changes and values read
        self.superseded = 0

    def sample(self, name: str, value: ua.DataValue) -> Sample:
        """One DataValue as a sample of tag `name`."""
        self.received += 1
        when = _seconds(value.SourceTimestamp) or _seconds(value.ServerTimestamp) or self._clock()
        status = value.StatusCode_ if hasattr(value, "StatusCode_") else value.StatusCode
        if status is not None and not status.is_good():
            return bad(f"OPC UA status {status.name}", when)
        raw = value.Value.Value if value.Value is not None else None
        if raw is None or isinstance(raw, list | dict | bytes):
            return bad(f"OPC UA value of type {type(raw).__name__} is not a number, a bool or a string", when)
        return sample_of(self.tags[name], raw, when)

    async def _connect(self) -> Client:
        cfg = self.config
        client = Client(cfg.url, timeout=cfg.timeout)
        if cfg.security == "SignAndEncrypt":
            await client.set_security(SecurityPolicyBasic256Sha256, certificate=str(cfg.certificate),
                                      private_key=str(cfg.private_key),
                                      server_certificate=str(cfg.server_certificate),
                                      mode=ua.MessageSecurityMode.SignAndEncrypt)
            uri = _certificate_uri(cfg.certificate)  # type: ignore[arg-type]
            if uri is not None:  # the session's application URI must be the certificate's
                client.application_uri = uri
        if cfg.login == "password":
            client.set_user(cfg.username)  # type: ignore[arg-type]
            client.set_password(_read_password(self.name, cfg.password_file))  # type: ignore[arg-type]
        elif cfg.login == "certificate":
            await client.load_client_certificate(str(cfg.certificate))
            await client.load_private_key(str(cfg.private_key))
        try:
            await client.connect()
        except BaseException:
            await _close(client)
            raise
        return client

    async def _serve(self, client: Client, table: TagTable) -> None:
        await self._watch(client, table)

    async def _disconnect(self, client: Client) -> None:
        await _close(client)

    def _lost_reason(self, exc: Exception) -> str | None:
        return _reason(exc)  # asyncua raises many kinds: any of them is a lost connection

    async def _watch(self, client: Client, table: TagTable) -> None:
        poll = {name: self.config.poll if tag.poll is None else tag.poll for name, tag in self.tags.items()}
        handlers = []
        by_interval: dict[float, list[str]] = {}
        for name, tag in self.tags.items():
            if tag.subscribe:
                by_interval.setdefault(poll[name], []).append(name)
        for interval, names in by_interval.items():
            nodes = {client.get_node(self.tags[n].node): n for n in names}
            handler = _Changes(self, table, nodes)
            subscription = await client.create_subscription(max(interval * 1000, 10.0), handler)
            await subscription.subscribe_data_change(list(nodes), sampling_interval=interval * 1000)
            handlers.append(handler)
        reads = [n for n, tag in self.tags.items() if not tag.subscribe]
        loop = asyncio.get_running_loop()
        due = {n: loop.time() for n in reads}
        step = min([self.config.poll, *poll.values()])
        while True:
            raise_if_cancelled()
            for handler in handlers:
                if handler.lost is not None:
                    raise ConnectionError(handler.lost)
            now = loop.time()
            todo = [n for n in reads if due[n] <= now]
            if todo:
                values = await client.read_attributes([client.get_node(self.tags[n].node) for n in todo])
                for name, value in zip(todo, values, strict=True):
                    table.put(name, self.sample(name, value))
                    due[name] = max(due[name] + poll[name], now)
            else:
                await client.read_attributes([client.get_node(_SERVER_STATE)])  # the connection is alive
            await asyncio.sleep(max(step, 0.01))

    async def write(self, point: PlantPointConfig, value: int | bool | bytes) -> None:
        client = self._client
        if client is None:
            raise PlantWriteFailed(f"{self.name}: not connected to {self.config.url}")
        node = client.get_node(point.node)
        try:
            kind = self._types.get(point.node)  # type: ignore[arg-type]
            if kind is None:
                kind = self._types[point.node] = await node.read_data_type_as_variant_type()  # type: ignore[index]
            variant = ua.Variant(bool(value) if kind == ua.VariantType.Boolean else int(value), kind)  # type: ignore[arg-type]
            await node.write_value(ua.DataValue(variant))
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            raise PlantWriteFailed(f"{self.name}: writing {point.node}: {_reason(exc)}") from None

    async def read_once(self) -> dict[str, Sample]:
        try:
            client = await self._connect()
        except Exception as exc:
            return {name: bad(f"connection failed: {_reason(exc)}", self._clock()) for name in self.tags}
        try:
            names = list(self.tags)
            values = await client.read_attributes([client.get_node(self.tags[n].node) for n in names])
            return {name: self.sample(name, value) for name, value in zip(names, values, strict=True)}
        except Exception as exc:
            return {name: bad(_reason(exc), self._clock()) for name in self.tags}
        finally:
            await _close(client)



def _seconds(stamp: datetime.datetime | None) -> float | None:
    if stamp is None:
        return None
    if stamp.tzinfo is None:  # OPC UA times are UTC
        stamp = stamp.replace(tzinfo=datetime.UTC)
    return stamp.timestamp()


def _reason(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _read_password(source: str, path: Path) -> str:
    try:
        return Path(path).read_text().strip()
    except OSError as exc:
        raise ConfigError(f"plant.sources.{source}.password_file {path}: {exc.strerror}") from None


def _certificate_uri(path: Path) -> str | None:
    from cryptography import x509

    data = Path(path).read_bytes()
    pem = data.startswith(b"-----")
    cert = x509.load_pem_x509_certificate(data) if pem else x509.load_der_x509_certificate(data)
    try:
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return None
    uris = names.get_values_for_type(x509.UniformResourceIdentifier)
    return uris[0] if uris else None


async def _close(client: Client) -> None:
    try:
        await asyncio.wait_for(client.disconnect(), 2.0)
    except asyncio.CancelledError:
        raise
    except Exception:  # the server is gone: nothing to close politely
        client.disconnect_socket()
