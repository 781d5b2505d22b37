"""Progress that shows whether or not a terminal is attached: a bar on a terminal, and one
line on standard error every ``EDGEVPR_PROGRESS_SECONDS`` (default 10) seconds and at the
end when the output is piped or logged, so that a long run never looks hung."""

from __future__ import annotations

import os
import sys
import time

from tqdm import tqdm


def interval() -> float:
    try:
        return max(0.0, float(os.environ.get("EDGEVPR_PROGRESS_SECONDS", "10")))
    except ValueError:
        return 10.0


class Progress:
    """``with Progress(total, "calibrating", "img") as bar: bar.update(1)``; ``bar.set(n, best=...)``
    moves to ``n`` with a postfix. ``enabled=False`` shows nothing (other ranks of a DDP run)."""

    def __init__(self, total: int | None, desc: str, unit: str = "it", enabled: bool = True, stream=None):
        self.total, self.desc, self.unit, self.enabled = total, desc, unit, enabled
        self.stream = stream or sys.stderr
        self.tty = enabled and hasattr(self.stream, "isatty") and self.stream.isatty()
        self.bar = tqdm(total=total, desc=desc, unit=unit, leave=False, file=self.stream) if self.tty else None
        self.n, self.postfix, self.started = 0, "", time.monotonic()
        self.last = self.started

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        self.close(failed=exc[0] is not None)

    def update(self, n: int = 1) -> None:
        self.set(self.n + n)

    def set(self, n: int, **postfix) -> None:
        self.n = n
        if postfix:
            self.postfix = ", ".join(f"{k} {v}" for k, v in postfix.items())
        if self.bar is not None:
            self.bar.n = n
            if postfix:
                self.bar.set_postfix(postfix, refresh=False)
            self.bar.refresh()
        elif self.enabled and time.monotonic() - self.last >= interval():
            self._line()

    def _line(self, done: bool = False) -> None:
        self.last = time.monotonic()
        seconds = self.last - self.started
        of = f"/{self.total}" if self.total else ""
        share = f" ({100 * self.n / self.total:.0f} %)" if self.total else ""
        extra = f", {self.postfix}" if self.postfix else ""
        state = "done" if done else "running"
        print(
            f"[edgevpr] {self.desc}: {self.n}{of} {self.unit}{share}{extra}, {seconds:.0f} s, {state}",
            file=self.stream,
            flush=True,
        )

    def close(self, failed: bool = False) -> None:
        if self.bar is not None:
            self.bar.close()
        elif self.enabled and not failed and time.monotonic() - self.started >= interval():
            self._line(done=True)  # quick steps stay quiet; long ones say they finished
