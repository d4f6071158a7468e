"""Sopcos Edge compiler: SIP-001 policy source to metered WebAssembly."""
__version__ = "0.1.0"
COMPILER_ID = f"scc-{__version__}"
