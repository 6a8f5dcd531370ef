"""``python -m crfiqa.evaluate``: the same command as ``crfiqa evaluate``."""
import sys

from .cli import main

sys.exit(main())
