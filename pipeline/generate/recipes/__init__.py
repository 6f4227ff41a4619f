"""One module per generation method, each a `Recipe` subclass; the method name is the module name with
`-` for `_` (`self-instruct` -> `self_instruct.py`). Imports `generate`'s own modules only."""

from __future__ import annotations

import importlib

from pipeline.generate.recipe import Recipe


def recipe_class(method: str) -> type[Recipe]:
    """The `Recipe` subclass that module `recipes/<method>.py` defines (imported on first use)."""
    module = importlib.import_module(f"{__name__}.{method.replace('-', '_')}")
    found = [
        obj
        for obj in vars(module).values()
        if isinstance(obj, type) and issubclass(obj, Recipe) and obj.method == method
    ]
    if len(found) != 1:
        raise LookupError(f"{module.__name__} must define exactly one Recipe with method {method!r}")
    return found[0]
