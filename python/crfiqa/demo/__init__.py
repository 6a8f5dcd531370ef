"""The self-contained demo: CR-FIQA trained and checked on degraded handwritten digits."""

from .degradations import KINDS, degrade
from .digits import DegradedDigits, make_digits
from .run import DemoSettings, run_demo

__all__ = ["KINDS", "DegradedDigits", "DemoSettings", "degrade", "make_digits", "run_demo"]
