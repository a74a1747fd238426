"""Subcommands of `ptl`, one module per area (see `ptl.cli.COMMAND_MODULES`)."""
