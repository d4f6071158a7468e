"""A real Mosquitto broker for a test: its own generated config, a free loopback port, stopped after.

Optional TLS (a CA and server certificate made here with `cryptography`) and username/password
(a password file made with `mosquitto_passwd`). `.ci/run` installs Debian's `mosquitto`; without it the
broker fails to start with a sentence saying what to install.
"""

from __future__ import annotations

import datetime
import getpass
import ipaddress
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
MOSQUITTO_PASSWD = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"


@dataclass(frozen=True)
class BrokerTLS:
    """Files a client needs to reach the broker over TLS: the CA that signed the broker's certificate."""

    ca_file: Path


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def write_tls(directory: Path) -> tuple[Path, Path, Path]:
    """A CA, and a server certificate it signed for localhost and 127.0.0.1, with its key, written to
    `directory`: (ca.pem, broker.pem, broker.key). The broker uses it; so can any other TLS test server."""
    now = datetime.datetime.now(datetime.UTC)
    start, end = now - datetime.timedelta(minutes=5), now + datetime.timedelta(days=1)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test broker CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(start).not_valid_after(end)
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(start).not_valid_after(end)
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    paths = directory / "ca.pem", directory / "broker.pem", directory / "broker.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return paths


class Broker:
    """`with Broker(tmp_path) as broker:` a running broker on `broker.host`:`broker.port`.

    `tls=True` serves TLS only (clients use `broker.tls.ca_file`); `users={"name": "password"}` requires
    those credentials and refuses anonymous clients. `stop()` and `start()` again (same port) let a test
    take the broker away and bring it back; with `persistent=True` the broker keeps persistent sessions
    (their subscriptions and queued QoS 1 messages) across that, as a production broker would."""

    def __init__(self, directory: Path, *, tls: bool = False, users: dict[str, str] | None = None,
                 persistent: bool = False) -> None:
        if not Path(MOSQUITTO).exists():
            raise RuntimeError("the MQTT tests need the Mosquitto broker: install Debian's `mosquitto` "
                               "(apt-get install mosquitto; .ci/run does this)")
        self.directory = directory / f"mosquitto-{_free_port()}"
        self.directory.mkdir(parents=True)
        self.host = "127.0.0.1"
        self.port = _free_port()
        self.tls: BrokerTLS | None = None
        self.users = dict(users or {})
        self._proc: subprocess.Popen[bytes] | None = None
        # Run as whoever runs the tests: started as root, mosquitto would otherwise drop to the user
        # `mosquitto`, which cannot read the files made here.
        persistence = (["persistence true", f"persistence_location {self.directory}/"] if persistent
                       else ["persistence false"])
        # No queue limit per client: mosquitto's default (1,000 QoS 1 messages) would cut a test's burst
        # short at a subscriber slowed by a loaded machine, and the burst's last reading would be lost.
        lines = [f"user {getpass.getuser()}", f"listener {self.port} {self.host}", *persistence,
                 "max_queued_messages 0",
                 "log_dest stderr",
                 "log_type error", "log_type warning"]
        if tls:
            ca, cert, key = write_tls(self.directory)
            self.tls = BrokerTLS(ca)
            lines += [f"cafile {ca}", f"certfile {cert}", f"keyfile {key}", "tls_version tlsv1.2"]
        if self.users:
            passwords = self.directory / "passwords"
            passwords.touch(mode=0o600)
            for name, password in self.users.items():
                subprocess.run([MOSQUITTO_PASSWD, "-b", str(passwords), name, password], check=True,
                               capture_output=True)
            lines += ["allow_anonymous false", f"password_file {passwords}"]
        else:
            lines.append("allow_anonymous true")
        self.config = self.directory / "mosquitto.conf"
        self.config.write_text("\n".join(lines) + "\n")
        self.log_path = self.directory / "mosquitto.log"

    def start(self, timeout: float = 10) -> Broker:
        log = self.log_path.open("ab")
        self._proc = subprocess.Popen([MOSQUITTO, "-c", str(self.config)], stdout=log, stderr=log)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"mosquitto exited with {self._proc.returncode}: "
                                   f"{self.log_path.read_text(errors='replace')}")
            try:
                socket.create_connection((self.host, self.port), timeout=0.2).close()
                return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"mosquitto did not listen on {self.port} within {timeout} s")

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc = None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def __enter__(self) -> Broker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
