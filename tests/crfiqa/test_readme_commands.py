"""Every ``crfiqa`` command the README shows is a valid command line (parsed here); the cheap ones
run in the other tests (score → evaluate, export-onnx, pack, train, the demo)."""

import shlex
from pathlib import Path

import pytest

from crfiqa.cli import build_parser

README = Path(__file__).resolve().parents[2] / "README.md"


def _commands() -> list[str]:
    """The ``crfiqa …`` commands of the README's shell blocks (continuations joined, ``&&`` split)."""
    text = README.read_text(encoding="utf-8")
    blocks = [block.split("\n", 1)[1] for block in text.split("```")[1::2] if block.startswith("bash")]
    lines = "\n".join(blocks).replace("\\\n", " ").splitlines()
    commands = []
    for line in lines:
        for part in line.split("#", 1)[0].split("&&"):
            words = shlex.split(part)
            for start, word in enumerate(words):
                if word == "crfiqa" and (start == 0 or words[start - 1] == "-m"):
                    commands.append(" ".join(words[start + 1 :]))
    return commands


def test_the_readme_shows_every_command():
    shown = {command.split()[0] for command in _commands()}
    subcommands = next(action for action in build_parser()._actions if action.dest == "command").choices
    assert (
        shown
        == set(subcommands)
        == {
            "demo",
            "pack",
            "train",
            "align",
            "score",
            "calibrate",
            "export-onnx",
            "evaluate",
            "curate",
        }
    )


@pytest.mark.parametrize("command", _commands())
def test_readme_command_parses(command):
    args = build_parser().parse_args(shlex.split(command))
    assert callable(args.run)
