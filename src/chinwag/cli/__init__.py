"""The command-line interface (typer): one module per command."""
