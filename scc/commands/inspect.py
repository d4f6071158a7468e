"""`scc inspect ARTIFACT.sop`: show what an artifact says about itself, for people (or --json)."""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from typing import Any

from axon.abi import ModuleMetaError, read_meta
from axon.clikit import EXIT_FAIL, EXIT_OK, read_bytes
from axon.envelope import ArtifactEnvelope
from axon.verify import VerifyError, parse_envelope

HELP = """Show a .sop artifact's envelope: policy, version, URN, signer, declared authority, times,
encryption and recipients, storage hint, the claims proven when it was packaged, and (when not
encrypted) the module's inputs and rules.

This only reads the file (size, strict JSON, schema): it checks no signature, hash or ledger entry.
To decide whether an artifact may run, use `axon verify ARTIFACT.sop --ledger PATH`.

exit status: 0 shown, 1 not a well-formed v1.1 envelope, 2 the file cannot be read."""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("inspect", help="show a .sop artifact's envelope (not a verification)",
                                   description=HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("artifact", metavar="ARTIFACT.sop")
    parser.add_argument("--json", action="store_true", help="print the envelope (blob elided) as JSON")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    data = read_bytes(args.artifact)
    try:
        envelope = parse_envelope(data)
    except VerifyError as exc:
        print(f"{args.artifact}: {exc} [{exc.code}]", file=sys.stderr)
        return EXIT_FAIL
    module = _module_meta(envelope)
    if args.json:
        print(json.dumps(describe(envelope, module, len(data)), indent=2))
    else:
        print(render(args.artifact, envelope, module, len(data)))
    return EXIT_OK


def _module_meta(envelope: ArtifactEnvelope) -> dict[str, Any] | None:
    """The plain module's sopcos.meta, as JSON; None when encrypted or unreadable."""
    if envelope.encrypted:
        return None
    try:
        meta = read_meta(envelope.blob)
    except ModuleMetaError:
        return None
    return {"combine": meta.combine, "default": meta.default, "gas_max": meta.gas_max,
            "inputs": {"telemetry": list(meta.telemetry), "context": list(meta.context)},
            "rules": list(meta.rules)}


def describe(envelope: ArtifactEnvelope, module: dict[str, Any] | None, size: int) -> dict[str, Any]:
    order = ("header", "meta", "encryption", "distribution", "payload", "signature")  # SIP-009 §4's order
    doc = {key: copy.deepcopy(envelope.doc[key]) for key in order}
    doc["payload"]["blob"] = f"<{len(envelope.blob)} bytes>"
    return {"verified": False, "file_bytes": size, "envelope": doc, "module": module}


def _utc(seconds: int | None) -> str:
    return "never" if seconds is None else time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(seconds))


def _input(spec: dict[str, Any]) -> str:
    details = [spec.get("type", "?")]
    if "values" in spec:
        details.append("|".join(spec["values"]))
    if "min" in spec or "max" in spec:
        details.append(f"{spec.get('min', '-inf')}..{spec.get('max', 'inf')}")
    if "unit" in spec:
        details.append(spec["unit"])
    if "default" in spec:
        details.append(f"default {json.dumps(spec['default'])}")
    return f"{spec.get('name')} ({', '.join(details)})"


def render(name: str, envelope: ArtifactEnvelope, module: dict[str, Any] | None, size: int) -> str:
    meta, header = envelope.meta, envelope.header
    encryption = envelope.doc["encryption"]
    lines = [
        f"{name}: {header['magic']} artifact v{header['version']} ({header['type']}), {size:,} bytes",
        "  NOT VERIFIED: this shows what the file claims; `axon verify` checks it against the ledger",
        f"  policy        {envelope.policy} {envelope.version}",
        f"  urn           {envelope.urn}",
        f"  signed by     {envelope.kid}",
        f"  authority     {meta['authority_level']} (declared; Axon checks the signer holds it)",
        f"  created       {_utc(envelope.created_at)}",
        f"  expires       {_utc(envelope.expires_at)}",
        f"  compiler      {meta['compiler_version']} (module ABI {meta['abi']}), gas_max {meta['gas_max']:,}",
        f"  source        {meta['source_hash']}",
    ]
    if envelope.encrypted:
        context = encryption["recipient_context"]
        shown = context if isinstance(context, str) else ", ".join(c[:18] + "..." if len(c) > 64 else c
                                                                    for c in context)
        names = [w.kid or f"key {w.public_key[:18]}..." for w in envelope.recipients]
        lines.append(f"  encryption    {encryption['algo']} for {shown}")
        lines.append(f"  wrapped keys  {len(names)}: {', '.join(names)}")
    else:
        lines.append("  encryption    none (the module is readable by anyone holding the file)")
    lines.append(f"  storage hint  {envelope.storage_hint or '(none)'}")
    lines.append(f"  payload       {envelope.integrity}, {len(envelope.blob):,} bytes"
                 + (" of ciphertext" if envelope.encrypted else ""))
    claims = meta.get("claims")
    if claims is None:
        lines.append("  claims        none recorded")
    else:
        lines.append(f"  claims        {len(claims['proven'])} proven by {claims['solver']} when packaged:")
        lines += [f"                  {claim['name']}" for claim in claims["proven"]]
    if module is not None:
        lines.append(f"  combine       {module['combine']}, default {module['default']}")
        for side in ("telemetry", "context"):
            specs = module["inputs"][side]
            lines.append(f"  {side:<13} " + (", ".join(_input(s) for s in specs) if specs else "(none)"))
        lines.append(f"  rules         {len(module['rules'])}: "
                     + ", ".join(f"{r['id']} -> {r['then']}" for r in module["rules"]))
    return "\n".join(lines)
