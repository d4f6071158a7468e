"""`axon` subcommands, one module each."""
