"""Input checking and encoding, SIP-001 §3 and docs/abi.md "Values".

Every declared input is checked before the module runs. Absent with a `default`: the default.
Absent without one, the wrong JSON type (a bool is not a number: Python's bool is an int, so types are
compared exactly), not one of the enum's values, not finite, or outside [min, max]: an `InputFault`
naming the input and why, never the value received (a masked field or a secret may be one). Undeclared
inputs are ignored. Context `now` (Unix seconds) comes from the injected clock when a policy declares it
as a number and the caller did not pass it.

Values cross to the module as f64: a number as itself, a bool as 1.0/0.0, an enum as the index of its
value. The checks are compiled once per module into one tuple per input, so the per-call work is one
tight loop; anything the loop does not accept at once goes to `_resolve`, which either accepts it
(a default, a number subclass) or says precisely what is wrong.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from axon import strictjson
from axon.abi import ModuleMeta
from synapse.errors import InputFault, MetaRefused, SynapseError

NOW = "now"
MAX_ENUM_VALUES = 256

_NUMBER, _BOOL, _ENUM = 0, 1, 2
_KINDS = {"number": _NUMBER, "bool": _BOOL, "enum": _ENUM}
_FIELDS = {
    "number": {"name", "type", "min", "max", "unit", "default"},
    "bool": {"name", "type", "default"},
    "enum": {"name", "type", "values", "default"},
}
_ABSENT = object()
_CLOCK = object()  # the `default` of context `now`: read the injected clock
_FINITE_MAX = sys.float_info.max

# One declared input: (name, kind, lo, hi, default, enum index, declaration). lo/hi are the finite
# bounds (±DBL_MAX when undeclared, so that NaN and ±inf fail the same comparison); default is the
# encoded value, None, or _CLOCK; the enum index maps each value to its f64 index.
_Spec = tuple[str, int, float, float, Any, dict[str, float], dict]


class InputSpecs:
    """One module's declared inputs, compiled (and checked) once, when the module is loaded."""

    __slots__ = ("telemetry", "context")

    def __init__(self, meta: ModuleMeta) -> None:
        self.telemetry = _compile_side("telemetry", meta.telemetry)
        self.context = _compile_side("context", meta.context)


class InputChecker:
    """The §3 checks of one module's inputs, with the clock that supplies context `now`."""

    __slots__ = ("_telemetry", "_context", "_clock")

    def __init__(self, specs: InputSpecs, clock: Callable[[], float]) -> None:
        self._telemetry = specs.telemetry
        self._context = specs.context
        self._clock = clock

    def encode(
        self, telemetry: Mapping[str, Any], context: Mapping[str, Any]
    ) -> tuple[list[float], list[float]]:
        """The f64 values of the declared telemetry and context inputs, in declaration order."""
        return (_encode("telemetry", self._telemetry, telemetry, self._clock),
                _encode("context", self._context, context, self._clock))


def _encode(side: str, specs: tuple[_Spec, ...], source: Any, clock: Callable[[], float]) -> list[float]:
    if not isinstance(source, Mapping):
        raise InputFault(side, None, f"must be a JSON object, got {_json_type(source)}")
    out: list[float] = []
    append = out.append
    get = source.get
    for spec in specs:
        name, kind, lo, hi, _default, index, _decl = spec
        value = get(name, _ABSENT)
        kind_of = type(value)
        if kind == _NUMBER:
            if (kind_of is float or kind_of is int) and lo <= value <= hi:
                append(float(value))
                continue
        elif kind == _BOOL:
            if kind_of is bool:
                append(1.0 if value else 0.0)
                continue
        elif kind_of is str:
            encoded = index.get(value)
            if encoded is not None:
                append(encoded)
                continue
        append(_resolve(side, spec, value, clock))
    return out


def _resolve(side: str, spec: _Spec, value: Any, clock: Callable[[], float]) -> float:
    """The slow path: a default, the clock, an unusual but valid value, or a precise InputFault."""
    name, kind, lo, hi, default, index, decl = spec
    if value is _ABSENT:
        if default is None:
            raise InputFault(side, name, "is absent and has no default")
        if default is not _CLOCK:
            return default
        value = clock()
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise InputFault(side, name, f"was not passed, and the runtime clock gave {_json_type(value)}")
    if kind == _NUMBER:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise InputFault(side, name, f"must be a number, got {_json_type(value)}")
        try:
            number = float(value)
        except OverflowError:
            raise InputFault(side, name, "is not finite (too large for a double)") from None
        if not math.isfinite(number):
            raise InputFault(side, name, "is not finite (NaN or an infinity)")
        if number < lo:
            raise InputFault(side, name, f"is below its minimum {_show(decl.get('min'))}")
        if number > hi:
            raise InputFault(side, name, f"is above its maximum {_show(decl.get('max'))}")
        return number
    if kind == _BOOL:
        if not isinstance(value, bool):
            raise InputFault(side, name, f"must be true or false, got {_json_type(value)}")
        return 1.0 if value else 0.0
    if not isinstance(value, str):
        raise InputFault(side, name, f"must be one of its values (a string), got {_json_type(value)}")
    if value not in index:
        values = _show_values(decl["values"])
        raise InputFault(side, name, f"is not one of its values {values}")
    return index[value]


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a bool"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, Mapping):
        return "an object"
    if isinstance(value, list | tuple):
        return "an array"
    return type(value).__name__


def _show(value: Any) -> str:
    if value is None:
        return "unbounded"
    if isinstance(value, str):
        text = value if len(value) <= 64 else value[:61] + "..."
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return repr(value)


def _show_values(values: list[str]) -> str:
    shown = ", ".join(_show(v) for v in values[:8])
    return f"[{shown}{', ...' if len(values) > 8 else ''}]"


# -- compiling the declarations (part of the interface check; a bad declaration refuses the module) --


def _compile_side(side: str, declarations: tuple[dict, ...]) -> tuple[_Spec, ...]:
    specs: list[_Spec] = []
    seen: set[str] = set()
    for position, decl in enumerate(declarations):
        where = f"sopcos.meta inputs.{side}[{position}]"
        if not isinstance(decl, dict) or not isinstance(decl.get("name"), str):
            raise MetaRefused(f"module refused: {where} is not an input declaration with a name")
        name = decl["name"]
        if name in seen:
            raise MetaRefused(f'module refused: {where} declares "{name}" a second time')
        seen.add(name)
        specs.append(_compile_input(side, where, decl))
    return tuple(specs)


def _compile_input(side: str, where: str, decl: dict) -> _Spec:
    name, type_name = decl["name"], decl.get("type")
    if type_name not in _KINDS:
        raise MetaRefused(f"module refused: {where} has type {type_name!r}; expected number, bool or enum")
    unknown = set(decl) - _FIELDS[type_name]
    if unknown:
        raise MetaRefused(f"module refused: {where} has unknown fields {sorted(unknown)}")
    kind = _KINDS[type_name]
    lo, hi, index = -_FINITE_MAX, _FINITE_MAX, {}
    if kind == _NUMBER:
        for bound in ("min", "max"):
            if bound in decl and not _is_finite_number(decl[bound]):
                raise MetaRefused(f"module refused: {where} {bound} must be a finite number")
        lo, hi = float(decl.get("min", lo)), float(decl.get("max", hi))
        if lo > hi:
            raise MetaRefused(f"module refused: {where} has min > max")
    elif kind == _ENUM:
        values = decl.get("values")
        if (not isinstance(values, list) or not 1 <= len(values) <= MAX_ENUM_VALUES
                or not all(isinstance(v, str) for v in values) or len(set(values)) != len(values)):
            raise MetaRefused(f"module refused: {where} values must be 1 to 256 distinct strings")
        index = {value: float(i) for i, value in enumerate(values)}
    default: Any = None
    if "default" in decl:
        default = _compile_default(where, kind, decl["default"], lo, hi, index)
    elif side == "context" and name == NOW and kind == _NUMBER:
        default = _CLOCK
    return (name, kind, lo, hi, default, index, dict(decl))


def _compile_default(
    where: str, kind: int, default: Any, lo: float, hi: float, index: dict[str, float]
) -> float:
    # Compare as doubles: RFC 8785 may write a large double default as an integer literal.
    if kind == _NUMBER and _is_finite_number(default) and lo <= float(default) <= hi:
        return float(default)
    if kind == _BOOL and isinstance(default, bool):
        return 1.0 if default else 0.0
    if kind == _ENUM and isinstance(default, str) and default in index:
        return index[default]
    raise MetaRefused(f"module refused: {where} has a default that its own declaration does not allow")


def _is_finite_number(value: Any) -> bool:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    try:
        return math.isfinite(float(value))
    except OverflowError:
        return False


# -- readings: the one way telemetry and context enter (synapse eval, the sidecar feed, the REST API) --

MAX_READING_INPUTS = 1024
MAX_INPUT_NAME = 128
MAX_TEXT = 1024
MAX_POLICY_NAME = 300
_READING_MEMBERS = frozenset(("telemetry", "context", "policy"))
_SCALARS = (bool, int, float, str)


class ReadingInvalid(SynapseError):
    """A reading breaks the rules of `Reading` (docs/service.md, "Readings"). `pointer` is the JSON
    Pointer of the offending member ('' for the whole document); `not_json` when it is not strict JSON."""

    code = "SYNAPSE-READING"

    def __init__(self, pointer: str, why: str, *, not_json: bool = False) -> None:
        super().__init__(f"{pointer}: {why}" if pointer else why)
        self.pointer, self.why, self.not_json = pointer, why, not_json


@dataclass(frozen=True, slots=True)
class Reading:
    """One reading: {"telemetry": {...}, "context": {...}, "policy": NAME}, context and policy optional.

    Values are true/false, numbers (an integer, or a finite double) or strings of at most 1,024
    characters; names are 1 to 128 characters; at most 1,024 of each. Nothing else is a member.
    """

    telemetry: dict[str, Any]
    context: dict[str, Any]
    policy: str | None = None

    @classmethod
    def parse(cls, raw: bytes | str, *, pointer: str = "", need_policy: bool = False) -> Reading:
        """Read one reading from strict JSON text (axon.strictjson), or raise ReadingInvalid."""
        return cls.from_json(read_document(raw), pointer=pointer, need_policy=need_policy)

    @classmethod
    def from_json(cls, doc: Any, *, pointer: str = "", need_policy: bool = False) -> Reading:
        """A reading from a document strictjson already read (a batch item), or ReadingInvalid."""
        if type(doc) is not dict:
            raise ReadingInvalid(pointer, f"must be a JSON object, got {_json_type(doc)}")
        extra = doc.keys() - _READING_MEMBERS
        if extra:
            name = sorted(extra)[0]
            raise ReadingInvalid(_child(pointer, name), "is not a member of a reading (telemetry, context, "
                                                        "policy)")
        policy = doc.get("policy")
        if "policy" in doc:
            if type(policy) is not str or not 1 <= len(policy) <= MAX_POLICY_NAME:
                raise ReadingInvalid(_child(pointer, "policy"),
                                     f"must be a string of 1 to {MAX_POLICY_NAME} characters")
        elif need_policy:
            raise ReadingInvalid(_child(pointer, "policy"), "is required: a policy name or artifact URN")
        if "telemetry" not in doc:
            raise ReadingInvalid(_child(pointer, "telemetry"), "is required (an object of input values)")
        telemetry = _values(doc["telemetry"], _child(pointer, "telemetry"))
        context = _values(doc["context"], _child(pointer, "context")) if "context" in doc else {}
        return cls(telemetry, context, policy)


def read_document(raw: bytes | str) -> Any:
    """A document holding readings (one, or a batch), read by axon.strictjson, or ReadingInvalid."""
    try:
        return strictjson.loads(raw)
    except strictjson.JsonError as exc:
        raise ReadingInvalid("", f"not strict JSON: {exc}", not_json=True) from None


def _values(values: Any, pointer: str) -> dict[str, Any]:
    if type(values) is not dict:
        raise ReadingInvalid(pointer, f"must be a JSON object, got {_json_type(values)}")
    if len(values) > MAX_READING_INPUTS:
        raise ReadingInvalid(pointer, f"has {len(values)} members; at most {MAX_READING_INPUTS}")
    for name, value in values.items():
        kind = type(value)
        if kind not in _SCALARS or (kind is str and len(value) > MAX_TEXT) or (
                kind is float and not -_FINITE_MAX <= value <= _FINITE_MAX):
            raise ReadingInvalid(_child(pointer, name), f"must be true, false, a finite number, or a string "
                                                        f"of at most {MAX_TEXT} characters")
        if not 1 <= len(name) <= MAX_INPUT_NAME:
            raise ReadingInvalid(_child(pointer, name), f"a name has 1 to {MAX_INPUT_NAME} characters")
    return values


def _child(pointer: str, key: str) -> str:
    return pointer + "/" + key.replace("~", "~0").replace("/", "~1")
