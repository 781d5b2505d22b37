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


def _quick_start_commands() -> list[list[str]]:
    """Each ``edgevpr ...`` command of the quick start, continuation lines joined, comments
    and optional ``[...]`` brackets removed."""
    import shlex

    block = re.search(r"## Quick start.*?```bash\n(.*?)```", README.read_text(), re.S).group(1)
    commands = []
    for line in block.replace("\\\n", " ").splitlines():
        for part in line.split("#")[0].split(";"):
            words = shlex.split(part.replace("[", " ").replace("]", " "))
            if words and words[0] == "edgevpr":
                commands.append(words[1:])
    return commands


def test_the_quick_start_activates_the_environment_and_every_command_parses():
    """Verbatim in a fresh shell after set-up: the block first activates .venv (set-up does
    not), and each command names a real subcommand and only options that command has."""
    import click

    from edgevpr.cli import main

    block = re.search(r"## Quick start.*?```bash\n(.*?)```", README.read_text(), re.S).group(1)
    assert block.splitlines()[0].startswith("source .venv/bin/activate")
    commands = _quick_start_commands()
    assert len(commands) >= 25
    for words in commands:
        command, rest = main, list(words)
        while isinstance(command, click.Group) and rest and rest[0] in command.commands:
            command = command.commands[rest.pop(0)]
        assert not isinstance(command, click.Group), f"edgevpr {' '.join(words)}: no such command"
        known = {name for param in command.params for name in (*param.opts, *param.secondary_opts)}
        unknown = [w for w in rest if w.startswith("--") and w.split("=")[0] not in known]
        assert not unknown, f"edgevpr {' '.join(words)}: {unknown} not options of this command"


def test_ci_runs_exactly_the_readme_test_command():
    ci = (README.parent / ".ci" / "run").read_text().strip().splitlines()[-1]
    assert f"   {ci}\n" in README.read_text()
