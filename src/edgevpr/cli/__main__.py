"""``python -m edgevpr.cli ...`` runs the ``edgevpr`` command."""

from edgevpr.cli.main import main

main(prog_name="edgevpr")
