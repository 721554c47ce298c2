"""The package version: one source (pyproject reads it), importable without the package's public face."""

__version__ = "0.1.0"
