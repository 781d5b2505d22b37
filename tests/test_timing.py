"""Timings say when the machine was busy: a contended measurement is flagged and warned about."""

import subprocess
import sys
import time

import pytest

from edgevpr.timing import MachineLoad, contention_warning, time_extraction


def _spin(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="other processes' CPU time is read from /proc/stat")
def test_a_timing_beside_two_busy_processes_is_flagged():
    burners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]
    try:
        time.sleep(0.5)  # let them start
        timing = time_extraction(lambda: _spin(0.01), runs=40)
    finally:
        for burner in burners:
            burner.kill()
    assert timing["contended"] is True and timing["other_cores_busy"] > 0.5
    line = contention_warning(timing, "extraction")
    assert line.startswith("warning: extraction was timed on a busy machine") and "\n" not in line


def test_the_flag_follows_the_other_cores_and_the_spread():
    load = MachineLoad()
    load.wall, load.own, load.busy = 1.0, 0.4, 0.5  # others used 0.1 of a core
    quiet = load.report({"median_ms": 10.0, "p90_ms": 11.0})
    assert quiet["contended"] is False and quiet["other_cores_busy"] == pytest.approx(0.1)
    assert load.report({"median_ms": 10.0, "p90_ms": 25.0})["contended"] is True  # p90 2.5x the median
    load.busy = 1.9
    assert load.report({"median_ms": 10.0, "p90_ms": 11.0})["contended"] is True
    assert contention_warning(quiet, "x") is None
