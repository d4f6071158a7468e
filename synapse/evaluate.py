"""Evaluation: check inputs, call `evaluate` in the sandbox, read the result block (docs/abi.md).

Every failure ends in DENY with a reason (SIP-001 §6): an input fault, a fault the module reports
(division by zero, NaN, out of gas, with the JSON Pointer of the expression and its rule), a trap,
fuel exhaustion, the wall-clock deadline, a host-function error, a module that breaks the ABI, and
even a bug of ours. `evaluate` never raises and never answers ALLOW on failure.

No state crosses evaluations. On the module's side: every evaluation runs in a new instance, made from
the compiled module's InstancePre, so it starts from the module's initial memory, globals and tables
(and its start function runs again); nothing one reading left behind can reach the next. The ABI asks
a module to keep no state, but a hand-made one need not obey, and a signed one is only vouched for,
not checked. On the host's side: the values the host functions serve and the logs they collect live in
a `_CallState` that is filled before each call and emptied after it, so a host call outside an
evaluation traps. Instances share a store until it holds INSTANCES_PER_STORE of them (synapse/
sandbox.py); after any trap the store is dropped with them. The fuel and deadline of an evaluation
cover its instantiation too.

Two paths, one behaviour: instances are made and called, and the host functions called, through the
C API (synapse/_capi.py) or, with the accelerators off (axon/accelerators.py), through wasmtime-py's
public API (synapse.sandbox.PublicInstances); tests/synapse/test_capi_guard.py holds them equal.

Threads: a wasmtime Store is not thread-safe and the host functions share the call state, so
`evaluate` holds a lock; concurrent callers take turns. For parallel evaluation, make one Evaluator
per thread from the same `PolicyModule` (the compiled code is shared).
"""
from __future__ import annotations

import re
import struct
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import wasmtime

from axon import abi, accelerators
from axon.abi import FAULT_TEXT, Fault, TraceLayout, Verdict
from synapse import explain
from synapse.decision import Decision
from synapse.errors import InputFault, InstantiationFailed
from synapse.inputs import InputChecker
from synapse.sandbox import (
    INSTANCES_PER_STORE,
    PAGE_BYTES,
    Limits,
    PolicyModule,
    PublicInstances,
    Trapped,
    engine,
    load_module,
)

if accelerators.ENABLED:  # switched off, nothing below wasmtime-py's public API is even imported
    from synapse import _capi

MAX_LOG_BYTES = 1024  # SIP-001 §5: a log message is at most 1,024 bytes of UTF-8

_BLOCK = struct.Struct("<iiiiq")  # verdict, rule, fault, site, gas: the result block at offset 0
if _BLOCK.size != abi.RESULT_SIZE or abi.RESULT_GAS != 16:
    raise ImportError("synapse/evaluate.py reads a result block that axon/abi.py no longer describes")
_VERDICTS = tuple(Verdict(code) for code in range(4))
_NO_INPUTS: tuple[tuple[float, ...], tuple[float, ...]] = ((), ())
_U32 = 0xFFFFFFFF
_CAUSE_NUMBER = re.compile(r"^\d+:\s*")  # wasmtime numbers the lines of a "Caused by:" chain


class _CallState:
    """What the host functions see: set before a call into wasm, emptied after it."""

    __slots__ = ("inputs", "logs", "max_logs", "error", "read")

    def __init__(self, max_logs: int) -> None:
        self.inputs = _NO_INPUTS
        self.logs: list[dict[str, str]] | None = None  # None: no evaluation in progress
        self.max_logs = max_logs
        self.error: str | None = None
        self.read: Callable[[int, int], bytes] = _no_memory  # bytes of the latest instance's memory

    def fail(self, message: str) -> str:
        """Record why a host function refused (the first reason is the evaluation's); return it."""
        if self.error is None:
            self.error = message
        return message


# -- the host functions: what they do, then the two ways they are called ---------------------------


def _value_refusal(state: _CallState, side: int, function: str, label: str, key: int) -> str:
    """Why get_telemetry / get_context_var(key) has no value to give."""
    if state.logs is None:
        return f"{function} was called outside an evaluation"
    return f"{function}({key}): the module declares {len(state.inputs[side])} {label} inputs"


def _log(state: _CallState, level: int, start: int, length: int) -> str | None:
    """emit_log: append the message to the evaluation's logs, or return why not."""
    logs = state.logs
    if logs is None:
        return "emit_log was called outside an evaluation"
    if not 0 <= level < len(abi.LOG_LEVELS):
        return f"emit_log: level {level} is not 0 (info), 1 (warn) or 2 (error)"
    if length > MAX_LOG_BYTES:
        return f"emit_log: message of {length} bytes exceeds {MAX_LOG_BYTES}"
    if start + length > PAGE_BYTES:  # the ABI's one page (checked once per module)
        return f"emit_log: message at bytes {start}..{start + length} lies outside memory"
    if len(logs) >= state.max_logs:
        return f"emit_log: more than {state.max_logs} logs in one evaluation"
    try:
        message = str(state.read(start, length), "utf-8")
    except UnicodeDecodeError:
        return "emit_log: message is not valid UTF-8"
    logs.append({"level": abi.LOG_LEVELS[level], "message": message})
    return None


def _unchecked_host_functions(state: _CallState) -> dict[str, Any]:
    """The host functions as C callbacks on raw value slots (synapse/_capi.py). Nothing may escape
    into C, where ctypes would report success: every failure becomes a trap."""

    def value_getter(side: int, function: str, label: str) -> Any:
        def callback(_env: int, _caller: int, args: Any, _nargs: int) -> int:
            try:
                slot = args[0]
                key = slot.i32
                values = state.inputs[side]
                if 0 <= key < len(values):
                    slot.f64 = values[key]
                    return 0
                return _capi.new_trap(state.fail(_value_refusal(state, side, function, label, key)))
            except BaseException as exc:
                return _capi.new_trap(state.fail(f"{function} failed: {exc!r}"))

        return _capi.HostCallback(callback)

    def emit_log(_env: int, _caller: int, args: Any, _nargs: int) -> int:
        try:
            refusal = _log(state, args[0].i32, args[1].i32 & _U32, args[2].i32 & _U32)
        except BaseException as exc:
            refusal = f"emit_log failed: {exc!r}"
        return 0 if refusal is None else _capi.new_trap(state.fail(refusal))

    return {"get_telemetry": value_getter(0, "get_telemetry", "telemetry"),
            "get_context_var": value_getter(1, "get_context_var", "context"),
            "emit_log": _capi.HostCallback(emit_log)}


class _HostRefused(Exception):
    """Raised by a public-API host function: wasmtime-py turns it into a trap."""


def _public_host_functions(state: _CallState) -> dict[str, Callable[..., Any]]:
    """The same host functions as plain Python functions for wasmtime-py's Linker.define_func."""

    def refuse(message: str) -> _HostRefused:
        return _HostRefused(state.fail(message))

    def value_getter(side: int, function: str, label: str) -> Callable[[int], float]:
        def host(key: int) -> float:
            try:
                values = state.inputs[side]
                if 0 <= key < len(values):
                    return values[key]
                refusal = _value_refusal(state, side, function, label, key)
            except BaseException as exc:
                refusal = f"{function} failed: {exc!r}"
            raise refuse(refusal)

        return host

    def emit_log(level: int, start: int, length: int) -> None:
        try:
            refusal = _log(state, level, start & _U32, length & _U32)
        except BaseException as exc:
            refusal = f"emit_log failed: {exc!r}"
        if refusal is not None:
            raise refuse(refusal)

    return {"get_telemetry": value_getter(0, "get_telemetry", "telemetry"),
            "get_context_var": value_getter(1, "get_context_var", "context"),
            "emit_log": emit_log}


class Evaluator:
    """Evaluates one policy module, as often as asked. See the module docstring for the guarantees."""

    def __init__(
        self, module: PolicyModule, *, limits: Limits | None = None, clock: Callable[[], float] = time.time
    ) -> None:
        meta = module.meta
        self.meta = meta
        self.limits = limits or Limits()
        self._inputs = InputChecker(module.inputs, clock)
        self._budget = self.limits.gas_budget(meta)
        self._fuel = self.limits.fuel_budget(meta)
        self._ticks = self.limits.deadline_ticks
        self._rule_ids = tuple(rule["id"] for rule in meta.rules)
        self._rule_verdicts = tuple(Verdict[rule["then"]] for rule in meta.rules)
        self._default = Verdict[meta.default]
        self._trace = module.trace
        self._lock = threading.Lock()
        self.instances_created = 0

        self._state = _CallState(max_logs=len(meta.rules))
        # The host functions must outlive the linker and every instance made from it: keep them here.
        unchecked = accelerators.ENABLED  # the C API's path, or the public API's (docs/accelerators.md)
        self._host = (_unchecked_host_functions if unchecked else _public_host_functions)(self._state)
        linker = wasmtime.Linker(engine())
        for name, (params, results) in abi.HOST_FUNCTIONS.items():
            ty = wasmtime.FuncType([_VALTYPES[p]() for p in params], [_VALTYPES[r]() for r in results])
            if unchecked:
                _capi.define_host_function(linker, abi.IMPORT_MODULE, name, ty, self._host[name])
            else:
                linker.define_func(abi.IMPORT_MODULE, name, ty, self._host[name])
        self._linker = linker
        pre = linker.instantiate_pre(module.module)
        self._instances = (_capi.FreshInstances if unchecked else PublicInstances)(
            pre, abi.EXPORT_EVALUATE, abi.EXPORT_MEMORY)
        self._state.read = self._instances.read
        self._store: Any = None  # the store new instances go to (as the instances' path has it)
        self._in_store = 0  # instances made in it
        try:
            self._instantiate()  # refuse a module that cannot be instantiated now, not at its first reading
            size = self._instances.memory_size()
            if size != PAGE_BYTES:
                raise ValueError(f"its memory has {size} bytes, not one page")
        except (wasmtime.WasmtimeError, Trapped, ValueError) as exc:
            raise InstantiationFailed(
                f"module refused: it cannot be instantiated: {_one_line(exc)}"
            ) from None

    @classmethod
    def from_wasm(
        cls, wasm: bytes, *, limits: Limits | None = None, clock: Callable[[], float] = time.time
    ) -> Evaluator:
        """Load (interface check, meta, compile) and instantiate a raw module."""
        return cls(load_module(wasm), limits=limits, clock=clock)

    def evaluate(self, telemetry: Mapping[str, Any], context: Mapping[str, Any] | None = None) -> Decision:
        """Decide once. Never raises; any failure is a DENY decision with a reason."""
        with self._lock:
            try:
                return self._evaluate(telemetry, {} if context is None else context)
            except Exception as exc:  # a bug of ours must still fail safe
                self._discard()
                return Decision.deny(f"internal error in the runtime: {exc!r}", gas_used=None)

    def explain(self, telemetry: Mapping[str, Any], context: Mapping[str, Any] | None = None) -> Decision:
        """Decide once, as `evaluate` does, with the decision's `explanation`: read from the trace the
        module wrote in the call that decided (synapse/explain.py, docs/abi.md "Trace"). Never raises. A
        module without a trace decides the same, and its explanation says why it has none; a trace that
        contradicts the result block makes the decision DENY."""
        with self._lock:
            try:
                return self._explained(telemetry, {} if context is None else context)
            except Exception as exc:  # a bug of ours must still fail safe
                self._discard()
                reason = f"internal error in the runtime: {exc!r}"
                return Decision.deny(reason, gas_used=None).explained(explain.failed(reason))

    # -- one evaluation -------------------------------------------------------------------------------

    def _explained(self, telemetry: Mapping[str, Any], context: Mapping[str, Any]) -> Decision:
        layout = self._trace
        if not isinstance(layout, TraceLayout):
            decision = self._evaluate(telemetry, context)
            return decision.explained(explain.untraced(layout, self._ending(decision, None)))
        request = explain.TraceRequest(layout)
        decision = self._evaluate(telemetry, context, request)
        if not request.asked:  # the module was not run
            return decision.explained(explain.explain(self.meta, layout, None, self._ending(decision, None)))
        read = self._instances.read  # the instance that decided: kept readable after a trap too
        ending = self._ending(decision, _BLOCK.unpack(read(0, _BLOCK.size)))
        trace = explain.Trace.read(layout, read)
        try:
            return decision.explained(explain.explain(self.meta, layout, trace, ending))
        except explain.TraceContradiction as exc:
            self._discard()
            reason = f"module broke the ABI: its trace contradicts its result block: {exc}"
            return Decision.deny(reason, gas_used=None).explained(explain.failed(reason))

    def _ending(self, decision: Decision, block: tuple[int, int, int, int, int] | None) -> explain.Ending:
        """How the evaluation that made `decision` ended; `block` is the result block, None when the
        module was not run (then gas_used 0 means an input fault, Decision's docstring)."""
        if block is None:
            return explain.Ending("input" if decision.gas_used == 0 else "failure", reason=decision.reason)
        verdict, rule, fault, site, _gas = block
        if decision.reason is None:
            return explain.Ending("rule", rule) if decision.rule is not None else explain.Ending("default")
        if (fault in FAULT_TEXT and verdict == Verdict.DENY and -1 <= rule < len(self._rule_ids)
                and -1 <= site < len(self.meta.sites)):
            return explain.Ending("fault", rule, fault, site, decision.reason)
        return explain.Ending("failure", reason=decision.reason)

    def _evaluate(self, telemetry: Mapping[str, Any], context: Mapping[str, Any],
                  trace: explain.TraceRequest | None = None) -> Decision:
        try:
            inputs = self._inputs.encode(telemetry, context)
        except InputFault as fault:
            return Decision.deny(f"input fault: {fault}")
        instances = self._instances
        try:
            self._instantiate()
        except (wasmtime.WasmtimeError, Trapped) as exc:
            self._discard()
            return Decision.deny(f"sandbox: the module could not be instantiated: {_one_line(exc)}",
                                 gas_used=None)
        state = self._state
        state.inputs = inputs
        state.logs = logs = []
        state.error = None
        if trace is not None:
            trace.ask(instances.write)
        try:
            returned = instances.call(self._budget)
        except Trapped as trap:
            self._discard()
            return self._trapped(trap)
        finally:
            state.inputs = _NO_INPUTS
            state.logs = None
        verdict, rule, fault, site, gas = _BLOCK.unpack(instances.read(0, _BLOCK.size))
        if fault == 0 and returned == verdict and 0 <= gas <= self._budget:
            if rule == -1:
                if verdict == self._default:
                    return Decision(self._default, None, logs, None, gas)
            elif 0 <= rule < len(self._rule_ids) and self._rule_verdicts[rule] == verdict:
                return Decision(_VERDICTS[verdict], self._rule_ids[rule], logs, None, gas)
        return self._unusual(returned, verdict, rule, fault, site, gas)

    def _unusual(self, returned: int, verdict: int, rule: int, fault: int, site: int, gas: int) -> Decision:
        """A fault the module reports, or a result block that breaks the ABI."""
        if fault != 0:
            text = FAULT_TEXT.get(fault)  # type: ignore[call-overload]
            sites = len(self.meta.sites)
            rules = len(self._rule_ids)
            in_range = -1 <= rule < rules and -1 <= site < sites
            if text is not None and returned == verdict == Verdict.DENY and in_range:
                return Decision.deny(self._fault_reason(text, site, rule),
                                     gas_used=gas if 0 <= gas <= self._budget else None)
        self._discard()  # a module that breaks the ABI does not get its store back
        return Decision.deny(
            f"module broke the ABI: it returned {returned} with result block verdict {verdict}, rule {rule}, "
            f"fault {fault}, site {site}, gas {gas} (budget {self._budget}), which is no valid outcome "
            "of this policy",
            gas_used=None,
        )

    def _fault_reason(self, text: str, site: int, rule: int) -> str:
        """`rule` is the rule being tried when it happened (-1: none yet), per docs/abi.md."""
        reason = f"fault: {text}" if site < 0 else f"fault: {text} at {self.meta.sites[site]}"
        if rule >= 0:
            reason += f' (while evaluating rule "{self._rule_ids[rule]}")'
        return reason

    def _trapped(self, trap: Trapped) -> Decision:
        """Why a call trapped. Its store is discarded, but lives on while its instance may be read."""
        if self._state.error is not None:
            return Decision.deny(f"host function error: {self._state.error}", gas_used=None)
        if trap.code is wasmtime.TrapCode.OUT_OF_FUEL:
            return Decision.deny(
                f"sandbox: fuel exhausted ({self._fuel} units per evaluation)", gas_used=None
            )
        if trap.code is wasmtime.TrapCode.INTERRUPT:
            return Decision.deny(
                f"sandbox: deadline exceeded ({self.limits.deadline_ms:g} ms per evaluation)", gas_used=None
            )
        _verdict, rule, fault, site, gas = _BLOCK.unpack(self._instances.read(0, _BLOCK.size))
        if trap.code is wasmtime.TrapCode.UNREACHABLE and fault == Fault.OUT_OF_GAS:
            known_site = site if -1 <= site < len(self.meta.sites) else -1
            known_rule = rule if -1 <= rule < len(self._rule_ids) else -1
            where = self._fault_reason(FAULT_TEXT[Fault.OUT_OF_GAS], known_site, known_rule)
            return Decision.deny(f"{where} (budget {self._budget})",
                                 gas_used=gas if 0 <= gas <= self._budget else None)
        return Decision.deny(f"trap: {_one_line(trap)}", gas_used=None)

    # -- instances ----------------------------------------------------------------------------------

    def _instantiate(self) -> None:
        """A new instance for the next evaluation, with the evaluation's fuel and deadline set: a start
        function runs now, sees no evaluation in progress (so any host call it makes traps), and is
        metered with the call."""
        store = self._store
        if store is None or self._in_store == INSTANCES_PER_STORE:
            store = self._store = self._instances.new_store(self.limits)
            self._in_store = 0
        store.set_fuel(self._fuel)
        store.set_epoch_deadline(self._ticks)
        self._in_store += 1
        self.instances_created += 1
        self._instances.instantiate(store)

    def _discard(self) -> None:
        """Make the next instance in a new store (the instance last made can still be read)."""
        self._store = None


def _no_memory(_start: int, _length: int) -> bytes:
    raise RuntimeError("no instance to read")


_VALTYPES = {"i32": wasmtime.ValType.i32, "i64": wasmtime.ValType.i64, "f64": wasmtime.ValType.f64}


def _one_line(exc: BaseException) -> str:
    """The most specific line of a wasmtime message (its last), without the backtrace."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return _CAUSE_NUMBER.sub("", lines[-1]) if lines else type(exc).__name__
