"""`synapse` subcommands, one module each."""
