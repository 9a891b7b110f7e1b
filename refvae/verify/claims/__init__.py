"""Claims of the four papers, one module per paper; importing this package registers them all."""
from . import seed000  # noqa: F401
from . import seed002  # noqa: F401
from . import seed003  # noqa: F401
from . import seed004  # noqa: F401
