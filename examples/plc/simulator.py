"""A boiler for the example: a Modbus TCP PLC and an OPC UA server, with a process that answers the
sidecar's verdicts. Run by run.sh; alone: `python examples/plc/simulator.py`.

Modbus (127.0.0.1:5020, unit 1): holding 0 drum pressure in tenths of a bar, holding 1 steam temperature
(degC, int16); the sidecar writes holding 10 (verdict code), holding 11 (heartbeat) and coil 0 (burner
permissive). OPC UA (opc.tcp://127.0.0.1:4841/, security None): ns=2;s=VentValve and ns=2;s=Mode are read
by the sidecar, ns=2;s=Verdict is written by it.

The process: while the permissive is on, the burner fires and the pressure climbs 2 bar/s; when it is
off (HALT, DENY, or a dead sidecar: the heartbeat stopped for 2 s), the burner is off and the pressure
falls 3 bar/s. The trip at 95 bar (HALT) is the policy's, not this script's; with the vent valve open
the policy says WARN above 80 bar, and the example's permissive is on for ALLOW and WARN.
"""

from __future__ import annotations

import asyncio
import time

from asyncua import Server, ua
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

MODBUS_PORT, OPCUA_PORT = 5020, 4841


async def main() -> None:
    blocks = tuple([SimData(0, values=[zero] * 100, datatype=kind)] for kind, zero in (
        (DataType.BITS, False), (DataType.BITS, False), (DataType.REGISTERS, 0), (DataType.REGISTERS, 0)))
    device = SimDevice(1, blocks)
    plc = ModbusTcpServer([device], address=("127.0.0.1", MODBUS_PORT))
    await plc.listen()

    opcua = Server()
    await opcua.init()
    opcua.set_endpoint(f"opc.tcp://127.0.0.1:{OPCUA_PORT}/")
    opcua.set_security_policy([ua.SecurityPolicyType.NoSecurity])
    index = await opcua.register_namespace("urn:sopcos:example:boiler")
    boiler = await opcua.nodes.objects.add_object(index, "Boiler")
    nodes = {}
    # The vent valve is open: above 80 bar the policy says WARN (fire on, watch the drum), above 95 HALT.
    for name, variant in (("VentValve", ua.Variant(True, ua.VariantType.Boolean)),
                          ("Mode", ua.Variant("AUTO", ua.VariantType.String)),
                          ("Verdict", ua.Variant(0, ua.VariantType.Int16))):
        nodes[name] = await boiler.add_variable(ua.NodeId(name, index), name, variant)
        await nodes[name].set_writable()

    from pymodbus.client import AsyncModbusTcpClient  # the process's own I/O to its PLC

    async with opcua:
        io = AsyncModbusTcpClient("127.0.0.1", port=MODBUS_PORT)
        await io.connect()
        pressure, last_beat, beat_seen = 50.0, -1, time.monotonic()
        print(f"simulator: Modbus on 127.0.0.1:{MODBUS_PORT}, OPC UA on opc.tcp://127.0.0.1:{OPCUA_PORT}/",
              flush=True)
        names = {0: "DENY", 1: "ALLOW", 2: "WARN", 3: "HALT"}
        while True:
            verdict, beat = (await io.read_holding_registers(10, count=2, device_id=1)).registers
            permissive = (await io.read_coils(0, count=1, device_id=1)).bits[0]
            if beat != last_beat:
                last_beat, beat_seen = beat, time.monotonic()
            alive = time.monotonic() - beat_seen < 2.0
            firing = permissive and alive
            ua_verdict = await nodes["Verdict"].read_value()
            print(f"pressure {pressure:5.1f} bar  verdict {names.get(verdict, verdict):5} (OPC UA: "
                  f"{names.get(ua_verdict, ua_verdict)})  permissive {'on ' if permissive else 'off'}  "
                  f"heartbeat {beat:5} {'' if alive else '(sidecar silent: burner off)'}", flush=True)
            pressure = min(pressure + 0.2, 120.0) if firing else max(pressure - 0.3, 0.0)
            await io.write_registers(0, [round(pressure * 10), 300], device_id=1)
            await asyncio.sleep(0.1)


if __name__ == "__main__":
    asyncio.run(main())
