"""The shipped JSON Schemas and how their errors are worded.

Error text names the field and the rule it broke, never the offending value: what failed a check is
untrusted (and, past decryption, possibly confidential), so it must not be echoed into logs.
"""

from __future__ import annotations

from functools import cache
from importlib import resources

import jsonschema
from jsonschema.exceptions import ValidationError, best_match

from axon import strictjson

_MAX_NAME = 40


@cache
def load(name: str) -> dict:
    """A schema shipped beside this module, e.g. `load("inner.schema.json")`."""
    return strictjson.loads(resources.files(__package__).joinpath(name).read_bytes())


@cache
def validator(name: str) -> jsonschema.protocols.Validator:
    schema = load(name)
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def first_error(name: str, doc: object, what: str) -> str | None:
    """None when `doc` satisfies schema `name`; otherwise one precise reason, e.g.
    `inner message /nonce: 96 random bits as 24 lowercase hex digits.`."""
    return describe_error(validator(name), doc, what)


def describe_error(checker: jsonschema.protocols.Validator, doc: object, what: str) -> str | None:
    """`first_error` for any validator (other packages' schemas word their errors the same way)."""
    error = best_match(checker.iter_errors(doc))
    if error is None:
        return None
    where = "/" + "/".join(str(part) for part in error.absolute_path)
    return f"{what} {where}: {_explain(error)}"


def _short(names: object) -> str:
    return ", ".join(repr(str(n)[:_MAX_NAME]) for n in list(names)[:5])


def _explain(error: ValidationError) -> str:
    kind, rule = error.validator, error.validator_value
    if kind == "type":
        return f"must be of JSON type {rule}"
    if kind == "required":
        missing = [name for name in rule if isinstance(error.instance, dict) and name not in error.instance]
        return f"missing required field(s) {_short(missing)}"
    if kind == "additionalProperties":
        allowed = error.schema.get("properties", {})
        extra = [name for name in error.instance if name not in allowed]
        return f"unexpected field(s) {_short(extra)}; allowed: {_short(allowed)}"
    if kind == "const":
        return f"must be {rule!r}"
    if kind == "pattern":
        return error.schema.get("description") or f"must match {rule}"
    if kind in ("minimum", "maximum", "minLength", "maxLength", "enum"):
        return f"violates {kind} {rule!r}"
    return f"violates {kind}"
