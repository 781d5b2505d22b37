"""The README's Python example runs as written (on a small generated street in its place)."""

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def _example() -> str:
    text = README.read_text()
    match = re.search(r"<!-- python-example[^>]*-->\s*```python\n(.*?)```", text, re.S)
    assert match, "README has no marked Python example"
    return match.group(1)


@pytest.mark.slow
def test_the_python_example_runs(tmp_path, monkeypatch, capsys):
    from edgevpr.data.synthetic import SyntheticSpec, generate_synthetic

    generate_synthetic(
        tmp_path / "edgevpr-demo", SyntheticSpec(num_places=30, query_every=3, width=96, height=72, step_px=24)
    )
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(_example(), str(README), "exec"), namespace)
    assert (tmp_path / "squeezenet_int8.onnx").is_file()
    assert namespace["int8"]["protocol_name"].split(":")[4] == "int8-cpu"
    assert namespace["ids"].shape == (1, 5)
    assert capsys.readouterr().out.count(":int8-cpu:") == 1


def test_the_readme_stays_a_user_guide():
    assert README.stat().st_size <= 15_500
    assert "seed 00" not in README.read_text()
