"""Experiments: the paper's tables as runs over the method registry, written to the store."""
