"""Errors of the compression side: each carries a one-line message meant for the user."""


class CompressionError(ValueError):
    """Bad model, checkpoint, dataset or compression setting; the message says which."""
