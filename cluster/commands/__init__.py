"""The `odh` subcommands' handlers, one module per area. Each handler takes the configs its
command declares in ``cluster.cli.COMMANDS`` (built from the command line) and returns an exit
code; the command-only configs (options that belong to no library stage) live beside them."""
