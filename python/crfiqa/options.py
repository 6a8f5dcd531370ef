"""The names the wrapper accepts for its string options, in one place. Imports nothing heavy, so
``--help`` can list them without loading torch."""

AMP_MODES = ("none", "bf16", "fp16")
