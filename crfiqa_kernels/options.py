"""The names the op and the heads accept for their string options, in one place. Imports nothing,
so a command line can list them without loading torch."""

REDUCTIONS = ("mean", "sum", "none")
MARGIN_GRADS = ("exact", "straight_through")
CR_FORMULAS = ("paper", "official")
ELASTIC_KINDS = ("arc", "cos")
