"""Old import paths of modules that became internal in predial 0.2.

Each such path was documented, so it keeps working until 0.3, with a
`DeprecationWarning` naming the public import to use instead. The old module
becomes the new one (same objects), so isinstance checks and monkeypatching
behave as before.
"""

from __future__ import annotations

import importlib
import sys
import warnings


def moved(old: str, new: str, instead: str) -> None:
    """Make the module being imported as `old` the module `new`; warn once per import."""
    warnings.warn(
        f"{old} is internal since predial 0.2 and goes in 0.3: {instead}",
        DeprecationWarning,
        stacklevel=3,
    )
    sys.modules[old] = importlib.import_module(new)
