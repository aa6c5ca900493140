"""Optional packages: telling a package that is not installed from one that is broken."""
import importlib
from types import ModuleType
from typing import Optional


def import_if_installed(module: str) -> Optional[ModuleType]:
    """``module`` imported, or None if it (or a package above it) is not installed.

    Raises:
        ModuleNotFoundError: The package is installed, but something it imports is missing:
            say so rather than behave as if it were not there.
    """
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as error:
        if error.name is None or not f'{module}.'.startswith(f'{error.name}.'):
            raise
        return None
