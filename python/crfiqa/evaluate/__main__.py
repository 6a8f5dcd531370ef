"""``python -m crfiqa.evaluate``: the same as ``crfiqa evaluate``."""

import sys

from ..cli import main

sys.exit(main(["evaluate", *sys.argv[1:]]))
