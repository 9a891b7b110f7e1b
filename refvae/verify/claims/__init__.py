"""Claims of the four papers, one module per paper; importing this package registers them all."""
from . import seed000  # noqa: F401
