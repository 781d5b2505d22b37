"""Every benchmark script imports (its imports of edgevpr still resolve after a refactor) and
answers --help, without running: the scripts measure for benchmarks/README.md, and a broken
one would otherwise only be found when someone next measures."""

import importlib
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
SCRIPTS = sorted(p.stem for p in BENCHMARKS.glob("*.py"))


@pytest.mark.parametrize("name", SCRIPTS)
def test_a_benchmark_script_imports_and_has_help(name, monkeypatch, capsys):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    module = importlib.import_module(name)
    assert module.__doc__, f"{name}.py: no docstring saying what it measures"
    if hasattr(module, "main"):
        monkeypatch.setattr(sys, "argv", [f"{name}.py", "--help"])
        with pytest.raises(SystemExit) as exited:
            module.main()
        assert exited.value.code == 0 and "usage" in capsys.readouterr().out.lower()
