"""The command line as a new user meets it: ``--help`` of every command, and every hint it prints."""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer.main
from typer.testing import CliRunner

from maskops.cli import app

SRC = Path(__file__).resolve().parent.parent / "src" / "maskops"
ROOT = typer.main.get_command(app)


def _group(cmd: Any) -> bool:
    return hasattr(cmd, "commands")  # Typer's groups (its own click types)


def _commands(cmd: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    yield path
    if _group(cmd):
        for name, sub in cmd.commands.items():
            yield from _commands(sub, (*path, name))


COMMANDS = list(_commands(ROOT))


@pytest.mark.parametrize("path", COMMANDS, ids=lambda p: " ".join(p) or "maskops")
def test_help_fits_80_columns_without_bool_placeholders_or_cut_text(path: tuple[str, ...]) -> None:
    result = CliRunner().invoke(app, [*path, "--help"], terminal_width=80, env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    text = result.output
    assert "<bool>" not in text  # a flag takes no value
    assert "…" not in text  # nothing cut with an ellipsis
    assert max(len(line) for line in text.splitlines()) <= 80


# `maskops ...` in a message or docstring; {x} (f-string) and <x> are placeholders
_HINT = re.compile(r"`+maskops ([^`]+?)`+")


def _hints() -> list[tuple[str, str]]:
    out = []
    for path in sorted(SRC.rglob("*.py")):
        for hint in _HINT.findall(path.read_text(encoding="utf-8")):
            out.append((f"{path.relative_to(SRC)}", hint))
    return out


HINTS = _hints()


def _resolve(words: list[str]) -> tuple[Any, list[str]]:
    cmd: Any = ROOT
    while words and _group(cmd) and not words[0].startswith("-"):
        sub = cmd.commands.get(words[0])
        if sub is None:
            break
        cmd, words = sub, words[1:]
    return cmd, words


def test_hints_are_found() -> None:
    assert len(HINTS) >= 5
    assert any("data prepare" in hint for _, hint in HINTS)


@pytest.mark.parametrize(("where", "hint"), HINTS, ids=[f"{w}: {h}" for w, h in HINTS])
def test_every_hint_names_a_command_and_options_that_exist(where: str, hint: str) -> None:
    words = shlex.split(re.sub(r"\{[^}]*\}|<[^>]*>", "X", hint.split("|")[0]))
    cmd, rest = _resolve(words)
    if words == ["--help"]:
        return
    assert cmd is not ROOT, f"{where}: `maskops {hint}` names no command"
    assert not _group(cmd), f"{where}: `maskops {hint}` stops at a command group"
    known = {opt for p in cmd.params for opt in (*p.opts, *p.secondary_opts)}
    for word in rest:
        if word.startswith("--"):
            assert word.split("=")[0] in known, f"{where}: `maskops {hint}`: {cmd.name} has no {word}"
    if rest:  # a command to run, not just a command's name: its required arguments are there
        required = [p for p in cmd.params if p.param_type_name == "argument" and p.required]
        positional = [w for w in rest if not w.startswith("-")]
        assert len(positional) >= len(required), f"{where}: `maskops {hint}` misses an argument"


def test_data_prepare_takes_the_task_as_argument_or_option(tmp_path: Path) -> None:
    runner = CliRunner()
    missing = runner.invoke(app, ["data", "prepare"])
    assert missing.exit_code == 2 and "data prepare facemask" in missing.output
    both = runner.invoke(app, ["data", "prepare", "facemask", "--task", "malaria"])
    assert both.exit_code == 2 and "two different tasks" in both.output
    for args in (["no-such-task"], ["--task", "no-such-task"]):
        result = runner.invoke(app, ["data", "prepare", *args])
        assert result.exit_code == 2 and "no-such-task" in result.output


@pytest.mark.parametrize("command", ["detect", "watch"])
def test_face_threshold_is_the_flag_and_threshold_its_deprecated_alias(
    command: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    runner = CliRunner()
    help_text = runner.invoke(app, [command, "--help"], terminal_width=80).output
    assert "--face-threshold" in help_text and "--threshold " not in help_text
    missing = tmp_path / "none.onnx"
    target = str(tmp_path) if command == "detect" else "0"
    result = runner.invoke(app, [command, target, "--model", str(missing), "--threshold", "0.4"])
    assert result.exit_code == 2  # the model is missing; the old flag itself is accepted
    assert "--threshold is deprecated: use --face-threshold" in caplog.text
