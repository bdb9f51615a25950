"""Public names that load on first use (PEP 562), for gradscope's package namespaces.

``import gradscope`` (or ``gradscope.display``, ``gradscope.plotting``) then imports
nothing a user does not reach for: JAX, pandas and matplotlib load with the first name
that needs them.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Mapping

__all__ = ["attributes", "lazy_namespace", "submodules"]


def attributes(module: str, names: Iterable[str]) -> dict[str, tuple[str, str]]:
    """``{name: (module, name)}``: public names that are attributes of ``module``."""
    return {name: (module, name) for name in names}


def submodules(package: str, names: Iterable[str]) -> dict[str, tuple[str, None]]:
    """``{name: (package.name, None)}``: submodules reached as attributes of ``package``."""
    return {name: (f"{package}.{name}", None) for name in names}


def lazy_namespace(package: str, namespace: dict, exports: Mapping[str, tuple[str, str | None]]):
    """The ``__getattr__`` and ``__dir__`` of a package whose ``exports`` load on first use.

    Args:
        package: the package's name (for error messages).
        namespace: the package's ``globals()``; a loaded name is kept there, so the next
            use costs nothing.
        exports: public name -> ``(module, attribute)``; attribute None means the module.

    Returns:
        ``(__getattr__, __dir__)``, to bind at the package's top level.
    """

    def __getattr__(name: str):
        try:
            module_name, attribute = exports[name]
        except KeyError:
            raise AttributeError(f"module {package!r} has no attribute {name!r}") from None
        module = importlib.import_module(module_name)
        value = module if attribute is None else getattr(module, attribute)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(exports))

    return __getattr__, __dir__
