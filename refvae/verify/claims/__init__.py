"""Claims of the four papers, one module per paper; importing this package registers them all."""
from . import yacoby2021  # noqa: F401
from . import dai2020  # noqa: F401
from . import berger2020  # noqa: F401
from . import yacoby2020  # noqa: F401
