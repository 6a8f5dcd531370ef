"""The one error ``crfiqa curate`` reports as a single line (exit status 2)."""


class CurateError(ValueError):
    """Bad input: a missing or unsuitable model, data or option. Its message names the culprit."""
