"""``python -m crfiqa.evaluate``: the same command as ``crfiqa evaluate``."""

import sys

from ..commands.evaluate import main

sys.exit(main())
