"""`scc` subcommands, one module each."""
