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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("kind", choices=["modbus"])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--inputs", default="{}")
    args = parser.parse_args()
    asyncio.run(_serve_modbus(args.port, json.loads(args.inputs)))


if __name__ == "__main__":
    main()
