"""Errors the export side raises for files a user brought."""


class CheckpointError(ValueError):
    """A checkpoint file is unreadable, or its tensors' names or shapes are not the published ones."""
