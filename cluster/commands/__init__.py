"""The `odh` subcommands, one module per area; each has ``register(sub)`` and its handlers."""
