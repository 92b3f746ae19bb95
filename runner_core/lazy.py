"""`lazy("torch")`: a module imported on first use.

The reference algorithms are written in torch, and the numpy backend subclasses them to reuse
their configuration, schedules and bookkeeping. Their modules refer to torch through this proxy,
so importing them imports no torch; a run on the numpy backend never touches the proxy, and
torch's import (a second or more) is never paid. Anything that needs torch at import time (a
decorator, a base class) is avoided in such modules."""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any


class LazyModule:
    def __init__(self, name: str) -> None:
        self._name = name
        self._module: ModuleType | None = None

    def __getattr__(self, attr: str) -> Any:
        module = self.__dict__.get("_module")
        if module is None:
            module = importlib.import_module(self.__dict__["_name"])
            self.__dict__["_module"] = module
        return getattr(module, attr)

    def __repr__(self) -> str:
        return f"<lazy module {self._name!r}>"


def lazy(name: str) -> Any:
    return LazyModule(name)
