"""Kill a writer at every step: run a write in a child process whose file operations SIGKILL
it at the k-th step (k = 1, 2, ...), until one run finishes; after each run the caller checks
that the artefact gives the old answers or the new ones, never a mix.

The steps are the file operations a writer makes: opening a file for writing, renaming,
unlinking, and the libraries' own writers (faiss.write_index, numpy.save, torch.save, ...).

One server process imports the heavy libraries once and forks a child per step (a child costs
milliseconds, not the seconds of a fresh interpreter importing torch); the server runs no
numerical work itself, so no thread pool exists to be broken by the fork."""

from __future__ import annotations

import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

SERVER = textwrap.dedent("""
    import builtins, importlib, os, signal, sys

    for module in filter(None, sys.argv[3].split(",")):
        importlib.import_module(module)
    script = open(sys.argv[1]).read()
    writers = [w for w in sys.argv[2].split(",") if w]

    def arm(kill_at):
        count = [0]

        def tick():
            count[0] += 1
            if count[0] == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)

        def step(function):
            def wrapped(*args, **kwargs):
                tick()
                return function(*args, **kwargs)
            return wrapped

        real_open = builtins.open

        def open_for(file, mode="r", *args, **kwargs):
            if any(flag in mode for flag in "wax+"):
                tick()
            return real_open(file, mode, *args, **kwargs)

        builtins.open = open_for
        os.replace, os.rename, os.unlink = step(os.replace), step(os.rename), step(os.unlink)
        for target in writers:
            module, name = target.rsplit(".", 1)
            module = importlib.import_module(module)
            setattr(module, name, step(getattr(module, name)))
        return step

    for line in sys.stdin:
        kill_at, log = int(line.split()[0]), line.split()[1]
        pid = os.fork()
        if pid == 0:
            fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
            os.dup2(fd, 1)
            os.dup2(fd, 2)
            try:
                step = arm(kill_at)  # the script may count its own calls as steps: step(function)
                exec(compile(script, "<writer>", "exec"), {"__name__": "__main__", "step": step})
            except BaseException:
                import traceback
                traceback.print_exc()
                sys.stderr.flush()
                os._exit(1)
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(0)
        _, status = os.waitpid(pid, 0)
        if os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL:
            answer = "killed"
        else:
            answer = "finished" if os.WEXITSTATUS(status) == 0 else "failed"
        print(answer, flush=True)
""")

PRELOAD = ("numpy", "torch", "faiss", "onnxruntime", "edgevpr.maps", "edgevpr.cli.main")


def kill_at_every_step(
    script: str,
    check,
    writers=("faiss.write_index", "numpy.save"),
    limit: int = 200,
    cwd=None,
    preload: tuple[str, ...] = (),
) -> int:
    """Run ``script`` killed at step 1, 2, ... until it finishes; call ``check(k)`` after each
    run (k = the step it died at, or None when it finished); ``writers`` are the library
    functions that count as steps besides file opens, renames and unlinks; ``preload`` names
    modules the script needs besides ``PRELOAD``, imported once before the forks. Returns the
    number of steps."""
    with tempfile.TemporaryDirectory(prefix="killpoints-") as folder:
        script_file = Path(folder) / "writer.py"
        script_file.write_text(script)
        server = subprocess.Popen(
            [sys.executable, "-c", SERVER, str(script_file), ",".join(writers), ",".join(PRELOAD + tuple(preload))],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=cwd,
        )
        try:
            for kill_at in range(1, limit + 1):
                log = Path(folder) / f"step{kill_at}.log"
                server.stdin.write(f"{kill_at} {log}\n")
                server.stdin.flush()
                answer = server.stdout.readline().strip()
                if answer not in ("killed", "finished"):
                    output = log.read_text().strip().splitlines()[-3:] if log.exists() else [answer or "no answer"]
                    raise AssertionError(f"the writer failed at step {kill_at}: {output}")
                check(None if answer == "finished" else kill_at)
                if answer == "finished":
                    return kill_at - 1
        finally:
            server.stdin.close()
            server.wait(timeout=60)
    raise AssertionError(f"the writer did not finish within {limit} steps")
