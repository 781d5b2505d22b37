"""Progress shows when the output is not a terminal: periodic lines on standard error."""

import io

from edgevpr.progress import Progress


def test_piped_progress_prints_periodic_lines_and_an_end(monkeypatch):
    monkeypatch.setenv("EDGEVPR_PROGRESS_SECONDS", "0")
    stream = io.StringIO()
    with Progress(4, "map images", "img", stream=stream) as bar:
        bar.update(2)
        bar.set(3, loss="0.25")
        bar.update(1)
    lines = stream.getvalue().splitlines()
    assert lines[0].startswith("[edgevpr] map images: 2/4 img (50 %)")
    assert "loss 0.25" in lines[1] and lines[-1].endswith("done") and len(lines) == 4


def test_quiet_when_disabled_or_quick(monkeypatch):
    stream = io.StringIO()
    monkeypatch.setenv("EDGEVPR_PROGRESS_SECONDS", "0")
    with Progress(2, "rank 1", enabled=False, stream=stream) as bar:
        bar.update(2)
    monkeypatch.setenv("EDGEVPR_PROGRESS_SECONDS", "30")
    with Progress(2, "quick", stream=stream) as bar:
        bar.update(2)
    assert stream.getvalue() == ""
