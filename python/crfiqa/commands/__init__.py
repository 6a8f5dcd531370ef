"""The subcommands of ``crfiqa``, one module each: its docstring is the help line and the
description, ``add_arguments`` adds its options (importing nothing heavy, so ``--help`` is fast),
``run`` does the work and imports what it needs; ``crfiqa.cli`` registers them in one loop."""

from __future__ import annotations

import sys

INPUT_ERROR = 2
INTERRUPTED = 130  # 128 + SIGINT, as a shell reports a Ctrl-C


class CommandError(Exception):
    """A problem with the command's inputs: printed as one line, exit status 2."""


def execute(prog: str, args) -> int:
    """Run ``args.run(args)``; a user's mistake becomes one line ``PROG: error: …`` and exit status 2."""
    try:
        return args.run(args)
    except (CommandError, OSError, ValueError) as error:
        print(f"{prog}: error: {one_line(error)}", file=sys.stderr)
        return INPUT_ERROR
    except KeyboardInterrupt:  # files are written atomically: none is left half-written
        print(f"{prog}: interrupted", file=sys.stderr)
        return INTERRUPTED


def one_line(error: BaseException) -> str:
    """The message of ``error`` on one line; of an error re-raised from a DataLoader worker, the
    worker's own message (the last line of the traceback it carries)."""
    text = str(error).strip()
    if "Original Traceback" in text:
        text = text.splitlines()[-1].split(": ", 1)[-1]
    if isinstance(error, OSError) and error.filename and error.strerror:
        text = f"{error.filename}: {error.strerror}"
    return " ".join(text.split()) or type(error).__name__
