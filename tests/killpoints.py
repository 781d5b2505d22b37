"""Kill a writer at every step: run a write in a child process whose file operations SIGKILL
it at the k-th step (k = 1, 2, ...), until one run finishes; after each run the caller checks
that the artefact gives the old answers or the new ones, never a mix.

The steps are the file operations a writer makes: opening a file for writing, renaming,
unlinking, and the libraries' own writers (faiss.write_index, numpy.save, torch.save, ...)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

CHILD = textwrap.dedent("""
    import builtins, importlib, os, signal, sys

    KILL_AT = int(sys.argv[1])
    count = [0]

    def step(function):
        def wrapped(*args, **kwargs):
            count[0] += 1
            if count[0] == KILL_AT:
                os.kill(os.getpid(), signal.SIGKILL)
            return function(*args, **kwargs)
        return wrapped

    real_open = builtins.open

    def open_for(file, mode="r", *args, **kwargs):
        if any(flag in mode for flag in "wax+"):
            count[0] += 1
            if count[0] == KILL_AT:
                os.kill(os.getpid(), signal.SIGKILL)
        return real_open(file, mode, *args, **kwargs)

    builtins.open = open_for
    os.replace = step(os.replace)
    os.rename = step(os.rename)
    os.unlink = step(os.unlink)
    for target in sys.argv[2].split(","):
        module, name = target.rsplit(".", 1)
        module = importlib.import_module(module)
        setattr(module, name, step(getattr(module, name)))
    exec(sys.stdin.read())
    print("finished", count[0])
""")


def kill_at_every_step(
    script: str, check, writers=("faiss.write_index", "numpy.save"), limit: int = 200, cwd=None
) -> int:
    """Run ``script`` killed at step 1, 2, ... until it finishes; call ``check(k)`` after each
    run (k = the step it died at, or None when it finished); ``writers`` are the library
    functions that count as steps besides file opens, renames and unlinks. Returns the number
    of steps."""
    for kill_at in range(1, limit + 1):
        done = subprocess.run(
            [sys.executable, "-c", CHILD, str(kill_at), ",".join(writers)],
            input=script,
            text=True,
            capture_output=True,
            cwd=cwd,
        )
        finished = done.returncode == 0 and "finished" in done.stdout
        if not finished and done.returncode != -9:
            raise AssertionError(f"the writer failed at step {kill_at}: {done.stderr.strip().splitlines()[-3:]}")
        check(None if finished else kill_at)
        if finished:
            return kill_at - 1
    raise AssertionError(f"the writer did not finish within {limit} steps")
