"""Errors the export side raises for files a user brought."""

from tryon.errors import EXIT_BAD_CHECKPOINT, EXIT_EXPORT_MISMATCH, TryonError


class CheckpointError(TryonError, ValueError):
    """A checkpoint file is unreadable, or its tensors' names or shapes are not the published ones."""
    exit_code = EXIT_BAD_CHECKPOINT
    http_status = 422


class ExportValidationError(TryonError, RuntimeError):
    """An exported model's outputs differ from the source framework's beyond the stated tolerance."""
    exit_code = EXIT_EXPORT_MISMATCH
    http_status = 422  # the checkpoint brought cannot be exported faithfully
