"""How long the ``edgevpr`` command takes before it does anything: ``--help``, ``list``,
``protocols`` and ``eval --help`` as whole processes (interpreter start included), in
interleaved rounds so that a change of the machine's load falls on all alike; the median of
the rounds per command, against goals of 0.5 s (``--help``) and 1.5 s (``list``, ``protocols``).
For comparison, ``python -c 'import torch'``: what every command paid before imports became lazy.

    python benchmarks/cli_startup.py [--rounds 15]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from edgevpr.atomic import write_json

COMMANDS = {
    "edgevpr --help": ["--help"],
    "edgevpr list": ["list"],
    "edgevpr protocols": ["protocols"],
    "edgevpr eval --help": ["eval", "--help"],
}
GOALS = {"edgevpr --help": 0.5, "edgevpr list": 1.5, "edgevpr protocols": 1.5}


def _seconds(argv: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "cli_startup.json"))
    args = parser.parse_args()
    command = shutil.which("edgevpr") or str(Path(sys.executable).with_name("edgevpr"))
    runs = {name: [command, *argv] for name, argv in COMMANDS.items()}
    runs["python -c 'import torch'"] = [sys.executable, "-c", "import torch"]
    for argv in runs.values():  # warm the page cache
        _seconds(argv)
    seconds: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(args.rounds):
        for name, argv in runs.items():
            seconds[name].append(_seconds(argv))
    rows = {
        name: {"median_s": float(np.median(v)), "min_s": float(np.min(v)), "max_s": float(np.max(v))}
        for name, v in seconds.items()
    }
    from edgevpr.evaluate.environment import environment

    write_json(args.out, {"rounds": args.rounds, "rows": rows, "goals_s": GOALS, "environment": environment()})
    for name, row in rows.items():
        goal = (
            f" (goal {GOALS[name]} s: {'met' if row['median_s'] <= GOALS[name] else 'NOT met'})"
            if name in GOALS
            else ""
        )
        print(f"{name:28s} median {row['median_s']:.3f} s (min {row['min_s']:.3f}, max {row['max_s']:.3f}){goal}")


if __name__ == "__main__":
    main()
