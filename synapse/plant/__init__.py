"""The plant: PLC sources (Modbus TCP, OPC UA, MQTT) read into tags, policies evaluated on consistent
snapshots of them, verdicts written back (docs/plc.md).

`points` (what the config names and the checks on it), `core` (sans-IO: samples, snapshots, when to
evaluate, what to write), `sources` (the one interface every protocol implements), one module per
protocol (`modbus`, `opcua`, `mqtt`: the only ones that import their library), and `loop`, the asyncio
shell the sidecar runs. `check` is `synapse tags check`.
"""
