"""``crfiqa --help`` is fast (building the parser imports neither torch nor numpy), every option
says what it does, and the option lists written out for speed agree with the library's."""

import subprocess
import sys

import pytest

from crfiqa.cli import build_parser


def test_building_the_parser_imports_nothing_heavy():
    code = (
        "import sys; from crfiqa.cli import build_parser; build_parser(); "
        "print(sorted(m for m in ('torch', 'numpy', 'matplotlib', 'crfiqa_kernels.ops') if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={"PYTHONPATH": ":".join(sys.path)},
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def _subparsers():
    parser = build_parser()
    (commands,) = [action for action in parser._actions if action.dest == "command"]
    return commands.choices


@pytest.mark.parametrize("command", sorted(_subparsers()))
def test_every_option_has_help(command):
    parser = _subparsers()[command]
    assert parser.description
    for action in parser._actions:
        assert action.help, f"crfiqa {command} {action.option_strings or action.dest}"


def test_the_written_out_choices_agree_with_the_library():
    from crfiqa.commands import train as command
    from crfiqa.models import STAGE_DEPTHS
    from crfiqa.train import PRESETS

    assert set(command.PRESET_NAMES) == set(PRESETS)
    assert set(command.NETWORKS) == set(STAGE_DEPTHS)
