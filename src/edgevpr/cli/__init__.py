"""The ``edgevpr`` command: the composition root that wires the library's layers together."""

from edgevpr.cli.main import main

__all__ = ["main"]
