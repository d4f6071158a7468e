"""Every limit the compiler enforces, in one place (SIP-001 §4 and §5, plus the module's memory)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CompilerLimits:
    max_source_bytes: int = 1 << 20  # SIP-001 §4: 1 MiB of source
    max_rules: int = 4096  # SIP-001 §4
    max_depth: int = 64  # SIP-001 §4: levels of expression nesting; a rule's `when` is level 1
    # Definitions built on definitions: each level is a nested call in the module, so a long chain
    # would exhaust the runtime's call stack and the policy could never decide. Same bound as
    # expression nesting: a definition that uses no other definition is level 1.
    max_let_depth: int = 64
    max_nodes: int = 100_000  # SIP-001 §4: expression nodes in all (`let` and `when` together)
    max_log_bytes: int = 1024  # SIP-001 §5: UTF-8 bytes of one log message
    # Room for log messages in the module's one 64 KiB memory page, after the 24-byte result block.
    max_log_data_bytes: int = 65536 - 24
    # JSON nesting the reader accepts. A legal policy nests at most 2 JSON levels per expression
    # level plus a few for the document around it, so this never rejects one that the expression
    # limit would accept; it only keeps hostile input from exhausting the parser's stack.
    max_json_depth: int = 2 * 64 + 8
    max_errors_shown: int = 100  # diagnostics beyond this are counted, not listed


LIMITS = CompilerLimits()
