"""The package version (one place: the package and its artifacts read it)."""
__version__ = "0.1.0"
