"""Rewriters used by canonicalize, one exporter idiom per module."""
