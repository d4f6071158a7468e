"""Real PLC servers for the plant tests, each in its own process on a loopback port, so a test can kill
one (SIGKILL, like a PLC losing power) and start it again on the same port.

- `ModbusServer`: pymodbus's TCP server with a datastore (1,000 coils, discrete inputs, holding and
  input registers on unit 1; input registers and discrete inputs preset from `inputs`).
- `OpcUaServer` (opcua section below): asyncua's server with a few variables, optionally only
  SignAndEncrypt Basic256Sha256, with users and certificates made here.

A test talks to them with the protocols' own clients (the sensors and the PLC program, in effect).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

SIZE = 1000


class _Process:
    """A server script in a subprocess that prints `listening PORT` once it accepts connections."""

    def __init__(self, args: list[str], log: Path) -> None:
        self.args = args
        self.log = log
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30) -> None:
        with self.log.open("ab") as err:
            self.proc = subprocess.Popen([sys.executable, __file__, *self.args, "--port", str(self.port)],
                                         stdout=subprocess.PIPE, stderr=err)
        deadline = time.monotonic() + timeout
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().decode()
        if not line.startswith("listening ") or time.monotonic() > deadline:
            self.proc.kill()
            raise RuntimeError(f"server did not start: {line!r}: {self.log.read_text(errors='replace')}")
        self.port = int(line.split()[1])

    def kill(self) -> None:
        """SIGKILL: the server vanishes without closing anything, like a PLC losing power."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
        self.proc = None


class ModbusServer(_Process):
    """`with ModbusServer(tmp_path) as plc:` pymodbus's server on 127.0.0.1:`plc.port`."""

    def __init__(self, directory: Path, inputs: dict[str, dict[int, list]] | None = None) -> None:
        super().__init__(["modbus", "--inputs", json.dumps(inputs or {})],
                         directory / f"modbus-{os.urandom(4).hex()}.log")

    def __enter__(self) -> ModbusServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.kill()

    def client(self) -> Any:
        from pymodbus.client import ModbusTcpClient

        client = ModbusTcpClient("127.0.0.1", port=self.port, timeout=5)
        assert client.connect(), "cannot connect to the test Modbus server"
        return client


async def _serve_modbus(port: int, inputs: dict[str, dict[str, list]]) -> None:
    from pymodbus.server import ModbusTcpServer
    from pymodbus.simulator import DataType, SimData, SimDevice

    def block(table: str, datatype: DataType, zero: Any) -> list[SimData]:
        values = [zero] * SIZE
        for address, preset in inputs.get(table, {}).items():
            values[int(address):int(address) + len(preset)] = preset
        return [SimData(0, values=values, datatype=datatype)]

    # The four tables apart (coils, discrete inputs, holding, input registers), as most PLCs map them.
    device = SimDevice(1, (block("coil", DataType.BITS, False), block("discrete", DataType.BITS, False),
                           block("holding", DataType.REGISTERS, 0), block("input", DataType.REGISTERS, 0)))
    server = ModbusTcpServer([device], address=("127.0.0.1", port))
    await server.listen()
    print("listening", server.transport.sockets[0].getsockname()[1], flush=True)
    await asyncio.Event().wait()


# -- OPC UA ------------------------------------------------------------------------------------------

OPCUA_NS = "urn:sopcos:test:boiler"
# Variables of the test server (ns=2;s=NAME): name -> (VariantType name, initial value).
OPCUA_VARIABLES = {"Pressure": ("Double", 50.0), "Mode": ("UInt16", 0), "VentValve": ("Boolean", False),
                   "Verdict": ("Int16", 99), "Permissive": ("Boolean", True), "Heartbeat": ("UInt16", 0)}


def make_certificate(directory: Path, name: str, uri: str) -> tuple[Path, Path]:
    """A self-signed application certificate (RSA 2048, the URI in its subjectAltName) and its key, PEM."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier(uri),
                                                        x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=True,
                                         key_encipherment=True, data_encipherment=True, key_agreement=False,
                                         key_cert_sign=False, crl_sign=False, encipher_only=False,
                                         decipher_only=False),
                           critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                                  ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = directory / f"{name}.pem", directory / f"{name}-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


class OpcUaServer(_Process):
    """asyncua's server on opc.tcp://127.0.0.1:`port`/ with OPCUA_VARIABLES. `secure`: SignAndEncrypt
    Basic256Sha256 only, with `certificate`/`key` (make_certificate); `users`: name -> password (else
    anonymous is allowed); `trusted`: client certificates accepted as a login."""

    def __init__(self, directory: Path, *, secure: bool = False, users: dict[str, str] | None = None,
                 trusted: list[Path] | None = None) -> None:
        self.certificate: Path | None = None
        args = ["opcua", "--users", json.dumps(users or {}),
                "--trusted", json.dumps([str(t) for t in trusted or []])]
        if secure:
            self.certificate, key = make_certificate(directory, f"server-{os.urandom(3).hex()}",
                                                     "urn:sopcos:test:server")
            args += ["--certificate", str(self.certificate), "--key", str(key)]
        super().__init__(args, directory / f"opcua-{os.urandom(4).hex()}.log")

    @property
    def url(self) -> str:
        return f"opc.tcp://127.0.0.1:{self.port}/"

    def __enter__(self) -> OpcUaServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.kill()


async def _serve_opcua(port: int, args: argparse.Namespace) -> None:
    from asyncua import Server, ua
    from asyncua.crypto import uacrypto
    from asyncua.crypto.permission_rules import User, UserRole

    users: dict[str, str] = json.loads(args.users)
    trusted = [uacrypto.der_from_x509(await uacrypto.load_certificate(p)) for p in json.loads(args.trusted)]

    class Users:
        def get_user(self, iserver: Any, username: str | None = None, password: str | None = None,
                     certificate: Any = None) -> Any:
            if username is not None:
                return User(role=UserRole.User) if users.get(username) == password else None
            if certificate is not None and certificate in trusted:
                return User(role=UserRole.User)
            return None if users or trusted else User(role=UserRole.User)  # anonymous

    server = Server(user_manager=Users())
    await server.init()
    server.set_endpoint(f"opc.tcp://127.0.0.1:{port}/")
    await server.set_application_uri("urn:sopcos:test:server")
    if args.certificate:
        await server.load_certificate(args.certificate)
        await server.load_private_key(args.key)
        server.set_security_policy([ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt])
    else:
        server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
    tokens: list[type] = [] if users or trusted else [ua.AnonymousIdentityToken]
    tokens += [ua.UserNameIdentityToken] if users else []
    tokens += [ua.X509IdentityToken] if trusted else []
    server.set_identity_tokens(tokens)
    index = await server.register_namespace(OPCUA_NS)
    boiler = await server.nodes.objects.add_object(index, "Boiler")
    for name, (kind, initial) in OPCUA_VARIABLES.items():
        variable = await boiler.add_variable(ua.NodeId(name, index), name,
                                             ua.Variant(initial, getattr(ua.VariantType, kind)))
        await variable.set_writable()
    async with server:
        print("listening", port, flush=True)
        await asyncio.Event().wait()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("kind", choices=["modbus", "opcua"])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--inputs", default="{}")
    parser.add_argument("--users", default="{}")
    parser.add_argument("--trusted", default="[]")
    parser.add_argument("--certificate")
    parser.add_argument("--key")
    args = parser.parse_args()
    if args.kind == "modbus":
        asyncio.run(_serve_modbus(args.port, json.loads(args.inputs)))
    else:
        if args.port == 0:  # asyncua cannot report the port it bound: take a free one (loopback only)
            import socket

            with socket.socket() as sock:
                sock.bind(("127.0.0.1", 0))
                args.port = sock.getsockname()[1]
        asyncio.run(_serve_opcua(args.port, args))


if __name__ == "__main__":
    main()
