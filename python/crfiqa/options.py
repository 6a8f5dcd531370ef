"""The names the wrapper accepts for its string options, in one place. Imports nothing heavy, so
``--help`` can list them without loading torch."""

AMP_MODES = ("none", "bf16", "fp16")

# ``crfiqa train --loss NAME``: the margin family of the head, and the hyperparameters the command
# line may set for it, by the family's own argument names (crfiqa.train.losses builds the family).
LOSS_PARAMETERS = {
    "arcface": ("s", "m"),
    "cosface": ("s", "m"),
    "elasticface-arc": ("s", "m", "std", "plus"),
    "elasticface-cos": ("s", "m", "std", "plus"),
    "adaface": ("s", "m", "h", "t_alpha"),
    "magface": ("s", "l_a", "u_a", "l_margin", "u_margin", "lambda_g", "easy_margin"),
    "curricularface": ("s", "m"),
}
LOSSES = tuple(LOSS_PARAMETERS)
# The parameters that are switches; every other one is a real number.
LOSS_SWITCHES = ("plus", "easy_margin")
FACE_CHOICES = ("largest", "all")  # which faces of a photo crfiqa align / score --align keep
ONNX_INPUT_KINDS = ("float", "uint8-rgb")  # what an exported graph takes: normalized floats or uint8 RGB crops
