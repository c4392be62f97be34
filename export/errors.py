"""Errors the export side raises for files a user brought."""

from tryon.runtime.errors import TryonError


class CheckpointError(TryonError, ValueError):
    """A checkpoint file is unreadable, or its tensors' names or shapes are not the published ones."""


class ExportValidationError(TryonError, RuntimeError):
    """An exported model's outputs differ from the source framework's beyond the stated tolerance."""
