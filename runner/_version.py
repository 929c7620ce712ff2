"""The version of xrun (one place; ``runner.__version__`` re-exports it)."""

__version__ = "0.1.0"
