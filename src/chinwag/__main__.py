"""``python -m chinwag`` runs the CLI."""

from chinwag.cli.app import main

main()
