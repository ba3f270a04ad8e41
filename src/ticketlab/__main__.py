"""``python -m ticketlab`` is the CLI."""

from ticketlab.cli import main

main()
