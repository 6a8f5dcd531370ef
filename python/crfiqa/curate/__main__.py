"""``python -m crfiqa.curate``: the same as ``crfiqa curate``."""

import sys

from ..cli import main

sys.exit(main(["curate", *sys.argv[1:]]))
