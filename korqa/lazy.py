"""A package's public names, imported on first use (PEP 562).

Importing any submodule runs its package's `__init__` first, so a package that imported its
names there would make `korqa.modeling.onnx_engine` pay for torch, or a BM25 index for
scikit-learn. A package hands its names to `lazy_exports` instead. (`import korqa` runs this
module too, so it imports nothing the interpreter has not loaded anyway, not even typing.)
"""

from __future__ import annotations

import importlib
from collections.abc import Callable


def lazy_exports(package: str, names_by_module: dict[str, tuple[str, ...]],
                 ) -> tuple[list[str], Callable[[str], object]]:
    """`__all__` and the module `__getattr__` for `package`, whose submodule `module` (a name
    relative to the package) defines the names `names_by_module[module]`."""
    home = {name: f"{package}.{module}"
            for module, names in names_by_module.items() for name in names}

    def __getattr__(name: str) -> object:
        if name not in home:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(home[name]), name)

    return sorted(home), __getattr__
