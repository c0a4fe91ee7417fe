"""Exceptions for bad input. The CLI turns any LpbenchError into a one-line message and exit 2."""


class LpbenchError(Exception):
    """Base class: a problem with the user's input, data or models (not a bug in lpbench)."""


class DataError(LpbenchError):
    """A data file is missing, unreadable or of the wrong format."""


class ChecksumError(DataError):
    """A file's sha256 does not match the expected one (corrupted or tampered)."""


class ModelError(LpbenchError):
    """A model is unknown, malformed, or does not fit the data."""
