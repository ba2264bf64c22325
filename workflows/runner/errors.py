"""The runner's one error type: a failure explained in one line for the user (exit status 2)."""


class RunError(Exception):
    """A failure with a one-line explanation for the user."""
