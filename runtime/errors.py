"""The project's own errors: one base class, so that callers (the CLI, the service, batches)
can tell a refusal the project explains from a bug.

Subclasses also derive from the built-in kind they refine (ValueError for bad input,
FileNotFoundError for missing models, RuntimeError for the environment), so code that
catches those keeps working.
"""


class TryonError(Exception):
    """An error whose message says what was wrong and what is accepted."""


class InputError(TryonError, ValueError):
    """Something a user gave (an image, an option, a file name) cannot be used."""
