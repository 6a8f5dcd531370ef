"""The names the wrapper accepts for its string options, in one place. Imports nothing heavy, so
``--help`` can list them without loading torch."""

AMP_MODES = ("none", "bf16", "fp16")
FACE_CHOICES = ("largest", "all")  # which faces of a photo crfiqa align / score --align keep
ONNX_INPUT_KINDS = ("float", "uint8-rgb")  # what an exported graph takes: normalized floats or uint8 RGB crops
