"""OPC UA tags against a real asyncua server (issue 11): security None and SignAndEncrypt Basic256Sha256
with certificates; anonymous, user/password and certificate logins, each accepted and refused; and the
sidecar end to end over SignAndEncrypt: the verdict and permissive written to the server's nodes."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from asyncua import Client, ua
from asyncua.crypto.security_policies import SecurityPolicyBasic256Sha256

from synapse.plant.opcua import OpcUaSource
from synapse.service.config import OpcUaSourceConfig, PlantTagConfig
from tests.plc_servers import OpcUaServer, make_certificate
from tests.service_support import Plant, Server, decisions, write_config
from tests.waiting import wait_until

pytestmark = pytest.mark.slow

TAGS = {"pressure": PlantTagConfig(source="ua", node="ns=2;s=Pressure"),
        "valve": PlantTagConfig(source="ua", node="ns=2;s=VentValve", subscribe=False)}


def read_once(**source) -> dict:
    config = OpcUaSourceConfig.model_validate({"kind": "opcua", "timeout": 5.0, **source})
    return asyncio.run(OpcUaSource("ua", config, TAGS).read_once())


def test_security_none_anonymous_reads_values_with_their_source_time(tmp_path):
    with OpcUaServer(tmp_path) as server:
        samples = read_once(url=server.url)
    assert samples["pressure"].value == 50.0 and samples["pressure"].quality is None
    assert samples["valve"].value is False
    assert abs(time.time() - samples["pressure"].source_time) < 3600  # the server's SourceTimestamp


def test_sign_and_encrypt_with_each_login_accepted_and_refused(tmp_path):
    client_cert, client_key = make_certificate(tmp_path, "client", "urn:sopcos:test:client")
    stranger_cert, stranger_key = make_certificate(tmp_path, "stranger", "urn:sopcos:test:stranger")
    (tmp_path / "right").write_text("s3cret\n")
    (tmp_path / "wrong").write_text("guess\n")
    with OpcUaServer(tmp_path, secure=True, users={"operator": "s3cret"}, trusted=[client_cert]) as server:
        secure = {"url": server.url, "security": "SignAndEncrypt", "certificate": str(client_cert),
                  "private_key": str(client_key), "server_certificate": str(server.certificate)}
        by_password = read_once(**secure, login="password", username="operator",
                                password_file=str(tmp_path / "right"))
        wrong_password = read_once(**secure, login="password", username="operator",
                                   password_file=str(tmp_path / "wrong"))
        by_certificate = read_once(**secure, login="certificate")
        stranger = read_once(**{**secure, "certificate": str(stranger_cert),
                                "private_key": str(stranger_key)}, login="certificate")
        anonymous = read_once(**secure)
        impostor, _ = make_certificate(tmp_path, "impostor", "urn:sopcos:test:server")
        # A server whose certificate is not the configured one cannot read what the client encrypts.
        unverified = read_once(**{**secure, "server_certificate": str(impostor), "timeout": 1.0})
        plain = read_once(url=server.url)  # security None: the server offers no such endpoint
    assert by_password["pressure"].value == 50.0 and by_certificate["valve"].value is False
    for refused in (wrong_password, stranger, anonymous):
        assert refused["pressure"].quality.startswith("connection failed: ")
        assert "BadUserAccessDenied" in refused["pressure"].quality or \
               "BadIdentityToken" in refused["pressure"].quality, refused["pressure"].quality
    for failed in (plain, unverified):
        assert failed["pressure"].value is None
        assert failed["pressure"].quality.startswith("connection failed: ")


@asynccontextmanager
async def operator_session(server: OpcUaServer, cert, key) -> AsyncIterator[Client]:
    """A session as the operator (password login) over SignAndEncrypt with the client's certificate."""
    client = Client(server.url, timeout=5)
    await client.set_security(SecurityPolicyBasic256Sha256, certificate=str(cert), private_key=str(key),
                              server_certificate=str(server.certificate),
                              mode=ua.MessageSecurityMode.SignAndEncrypt)
    client.application_uri = "urn:sopcos:test:client"
    client.set_user("operator")
    client.set_password("s3cret")
    async with client:
        yield client


async def set_pressure(server: OpcUaServer, cert, key, value: float) -> None:
    async with operator_session(server, cert, key) as client:
        await client.get_node("ns=2;s=Pressure").write_value(ua.Variant(value, ua.VariantType.Double))


async def outputs(server: OpcUaServer, cert, key) -> tuple:
    async with operator_session(server, cert, key) as client:
        return tuple([await client.get_node(f"ns=2;s={name}").read_value()
                      for name in ("Verdict", "Permissive", "Heartbeat")])


def test_sidecar_over_sign_and_encrypt_writes_verdict_and_permissive_nodes(tmp_path):
    plant = Plant(tmp_path)
    sop, _ = plant.artifact("1.0.0")
    (tmp_path / "boiler.sop").write_bytes(sop)
    cert, key = make_certificate(tmp_path, "client", "urn:sopcos:test:client")
    (tmp_path / "ua-password").write_text("s3cret\n")
    with OpcUaServer(tmp_path, secure=True, users={"operator": "s3cret"}) as server:
        config = write_config(tmp_path / "sidecar.toml", {
            "ledger": {"path": plant.ledger_path}, "node": {"key": plant.node_key},
            "store": {"path": tmp_path / "store"}, "decision_log": {"path": tmp_path / "decisions"},
            "auth": {"open_evaluate": True}, "sidecar": {"artifacts": [tmp_path / "boiler.sop"],
                                                        "context": {"mode": "AUTO"}},
            "plant": {"cycle": 0.1, "period": 1.0},
            "plant.sources.ua": {"kind": "opcua", "url": server.url, "security": "SignAndEncrypt",
                                 "certificate": cert, "private_key": key,
                                 "server_certificate": server.certificate, "login": "password",
                                 "username": "operator", "password_file": tmp_path / "ua-password"},
            "plant.tags.pressure": {"source": "ua", "node": "ns=2;s=Pressure", "max_age": 3600},
            "plant.tags.valve": {"source": "ua", "node": "ns=2;s=VentValve", "max_age": 3600},
            "plant.policies.boiler-guard": {
                "telemetry": {"pressure_bar": "pressure", "valve_open": "valve"},
                "outputs": [{"value": "verdict", "source": "ua", "node": "ns=2;s=Verdict"},
                            {"value": "permissive", "source": "ua", "node": "ns=2;s=Permissive",
                             "permissive_on": ["ALLOW", "WARN"]}]},
            "plant.heartbeat": {"source": "ua", "node": "ns=2;s=Heartbeat"},
        })
        sidecar = Server(tmp_path, config, command="run").wait_ready()
        try:
            wait_until(lambda: asyncio.run(outputs(server, cert, key))[:2] == (1, True), what="ALLOW written")
            asyncio.run(set_pressure(server, cert, key, 99.0))
            wait_until(lambda: asyncio.run(outputs(server, cert, key))[:2] == (3, False), what="HALT written")
            assert decisions(plant)[-1]["telemetry"] == {"pressure_bar": 99.0, "valve_open": False}
            assert asyncio.run(outputs(server, cert, key))[2] > 0  # the heartbeat counts
        finally:
            assert sidecar.stop() == 0
        assert asyncio.run(outputs(server, cert, key))[:2] == (0, False)  # safe values on shutdown
