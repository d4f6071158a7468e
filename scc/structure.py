"""Stage 2, the structure check: the document against the SIP-001 JSON Schema (Draft 2020-12).

The schema (scc/schema/sip-001.schema.json) says which keys exist, which are required, what JSON
type each value has, the formats of names, ids and versions, the arity of every operator (that list
is generated from scc/operators.py: `operator_schemas`), and that any other key anywhere is an
error. jsonschema finds the violations; this module turns each into a diagnostic a plant engineer
can act on, pointing at the exact key or value.
"""

from __future__ import annotations

import difflib
import functools
import json
from importlib import resources
from typing import TYPE_CHECKING, Any

from axon import accelerators, strictjson
from scc.errors import Diagnostic
from scc.operators import OPERATORS, Evaluation, Operator
from scc.reader import join_pointer

if TYPE_CHECKING:  # jsonschema loads when a document is not known valid (start-up of `scc check`)
    from jsonschema import Draft202012Validator, ValidationError

SCHEMA_RESOURCE = "sip-001.schema.json"

_TYPE_NAMES = {
    "string": "text in double quotes",
    "number": "a number",
    "integer": "a whole number",
    "boolean": "true or false",
    "object": "an object {...}",
    "array": "a list [...]",
    "null": "null",
}


@functools.cache
def load_schema() -> dict[str, Any]:
    """The SIP-001 schema shipped with scc."""
    return strictjson.loads(resources.files("scc").joinpath("schema", SCHEMA_RESOURCE).read_bytes())


@functools.cache
def _validator() -> Draft202012Validator:
    from jsonschema import Draft202012Validator
    return Draft202012Validator(load_schema())


@functools.cache
def _compiled_validator() -> Any:
    return accelerators.compiled_schema(load_schema())


def _expression() -> dict[str, Any]:
    return load_schema()["$defs"]["expression"]


def validate(document: Any) -> list[Diagnostic]:
    """Every structural problem in `document` (unsorted; the pipeline sorts by position).

    jsonschema-rs, when on, answers "valid" first (docs/accelerators.md); jsonschema, the reference,
    finds and words the problems."""
    if accelerators.known_valid(_compiled_validator(), document):
        return []
    errors = list(_validator().iter_errors(document))
    # An expression object with an unknown operator also has "too many keys"; say it once.
    unknown_operator_at = {tuple(e.absolute_path) for e in errors
                           if e.validator == "additionalProperties" and e.schema is _expression()}
    out: list[Diagnostic] = []
    seen: set[tuple[str, str]] = set()
    for error in errors:
        if error.validator == "maxProperties" and tuple(error.absolute_path) in unknown_operator_at:
            continue
        for diagnostic in _explain(error):
            key = (diagnostic.pointer, diagnostic.message)
            if key not in seen:
                seen.add(key)
                out.append(diagnostic)
    return out


def describe(value: Any) -> str:
    """A value as a person would name it in a message."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, int | float):
        return f"the number {value!r}"
    if isinstance(value, str):
        shown = value if len(value) <= 40 else value[:37] + "..."
        return f"the text {json.dumps(shown, ensure_ascii=False)}"
    if isinstance(value, list):
        return f"a list of {len(value)} item{'s' if len(value) != 1 else ''}"
    return "an object"


def _title(schema: Any, default: str = "a valid value") -> str:
    return schema.get("title", default) if isinstance(schema, dict) else default


def _suggest(word: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    lowered = [c for c in choices if c.lower() == word.lower()]
    match = lowered or close
    return f"; did you mean `{match[0]}`?" if match else ""


def _explain(error: ValidationError) -> list[Diagnostic]:
    path = list(error.absolute_path)
    pointer = join_pointer("", *path)
    keyword = error.validator
    schema = error.schema
    instance = error.instance
    title = _title(schema)

    if "propertyNames" in error.absolute_schema_path:
        # The failing instance is a key of the object at `pointer`, not a value.
        name_pointer = join_pointer(pointer, instance) if isinstance(instance, str) else pointer
        why = schema.get("description", "")
        return [Diagnostic("SCC-E014", name_pointer, f"`{instance}` is not {title}: {why}")]

    if keyword == "additionalProperties":
        allowed = sorted(schema.get("properties", {}))
        extras = [k for k in instance if k not in schema.get("properties", {})]
        if schema is _expression():
            return [Diagnostic("SCC-E016", join_pointer(pointer, k),
                               f"`{k}` is not an expression operator{_suggest(k, allowed)} "
                               f"(operators: {', '.join(allowed)})") for k in extras]
        where = f" in {title}" if title != "a valid value" else ""
        return [Diagnostic("SCC-E010", join_pointer(pointer, k),
                           f"unknown key `{k}`{where}{_suggest(k, allowed)}"
                           f" (allowed keys: {', '.join(allowed)})") for k in extras]

    if keyword == "required":
        missing = [k for k in error.validator_value if k not in instance]
        return [Diagnostic("SCC-E011", pointer, f"{title} needs the key `{k}`, which is missing")
                for k in missing]

    if keyword in ("minProperties", "maxProperties") and schema is _expression():
        if not instance:
            return [Diagnostic("SCC-E016", pointer, "an empty object is not an expression; write an operator "
                                                    "such as {\"gt\": [a, b]}")]
        keys = ", ".join(f"`{k}`" for k in instance)
        return [Diagnostic("SCC-E016", pointer,
                           f"an expression has exactly one operator, but this object has {len(instance)}: "
                           f"{keys}")]

    if keyword == "type":
        types = error.validator_value if isinstance(error.validator_value, list) else [error.validator_value]
        expected = title if "title" in schema else " or ".join(_TYPE_NAMES[t] for t in types)
        hint = ""
        operator = OPERATORS.get(path[-1]) if path else None
        if operator is not None and operator.bare and isinstance(instance, list):
            hint = f" (`{path[-1]}` takes one expression, written without [ ])"
        return [Diagnostic("SCC-E012", pointer,
                           f"expected {expected} here, found {describe(instance)}{hint}")]

    if keyword in ("enum", "const"):
        choices = list(error.validator_value) if keyword == "enum" else [error.validator_value]
        listed = ", ".join(json.dumps(c) for c in choices)
        suggest = isinstance(instance, str) and len(choices) > 1
        hint = _suggest(instance, [str(c) for c in choices]) if suggest else ""
        expected = f"{title}: one of {listed}" if len(choices) > 1 else f"{listed} ({title})"
        return [Diagnostic("SCC-E013", pointer, f"expected {expected}; found {describe(instance)}{hint}")]

    if keyword == "pattern":
        return [Diagnostic("SCC-E014", pointer,
                           f"{describe(instance)} is not {title}: {schema.get('description', '')}")]

    if keyword in ("minItems", "maxItems"):
        found = f"found {len(instance)}"
        operator = path[-1] if path else None
        if operator in OPERATORS:
            return [Diagnostic("SCC-E015", pointer, f"`{operator}` takes {title}; {found}")]
        if schema is load_schema()["properties"]["rules"]:
            return [Diagnostic("SCC-E015", pointer, "a policy needs at least one rule; the list is empty")]
        bound = "at least" if keyword == "minItems" else "at most"
        return [Diagnostic("SCC-E015", pointer,
                           f"expected {title} ({bound} {error.validator_value}); {found}")]

    return [Diagnostic("SCC-E017", pointer, f"does not fit the SIP-001 structure: {error.message}")]


def operator_schemas() -> dict[str, dict[str, Any]]:
    """The operators of the schema's `expression`, as the table (scc/operators.py) defines them; the
    shipped schema lists exactly these (tests/scc/test_schema.py). The `title` names the operand count
    in messages: "`gt` takes two operands"."""
    return {name: _operator_schema(operator) for name, operator in OPERATORS.items()}


_EXPRESSION_REF = {"$ref": "#/$defs/expression"}
_COUNT = {2: "two", 3: "three"}


def _operator_schema(operator: Operator) -> dict[str, Any]:
    low, high = operator.arity
    if operator.bare:
        return dict(_EXPRESSION_REF)
    if operator.evaluation is Evaluation.MEMBER:
        literals = {"type": "array", "title": f"a list of {low} to {high} values", "minItems": low,
                    "maxItems": high,
                    "items": {"type": ["number", "string"], "title": "a number or an enum value"}}
        return {"type": "array", "title": "[x, [value, ...]]", "minItems": 2, "maxItems": 2,
                "prefixItems": [dict(_EXPRESSION_REF), literals]}
    if low == high:
        title = f"{_COUNT[low]} operands" + (f" [{', '.join(operator.names)}]" if operator.names else "")
    else:
        title = f"{low} to {high} operands"
    return {"type": "array", "title": title, "items": dict(_EXPRESSION_REF), "minItems": low,
            "maxItems": high}
