"""xrun: declarative, reproducible experiment runner."""

from runner.errors import XrunError

__version__ = "0.1.0"
__all__ = ["XrunError", "__version__"]
