"""``python -m crfiqa``: the same command as ``crfiqa``."""

import sys

from .cli import main

sys.exit(main())
