"""Defer the import of heavy modules until something reads from them.

Importing Great Expectations 1.x imports ``scipy.stats`` and ``altair`` at module level for three
expectations this platform does not use (the Kolmogorov-Smirnov and KL-divergence ones): about
2 s of CPU in every fresh process, nearly half of GX's import. :func:`defer` puts a placeholder
module in ``sys.modules`` for each name; ``import`` statements then bind the placeholder, and the
first attribute read through it imports the real module (under a lock, once) and forwards every
read after that. Code that never touches the module never pays for it; code that does gets the
real module, so behaviour is unchanged.

A name already imported is left alone, and an import of the real module by any other route
(``import scipy.stats`` after a read, ``from scipy.stats import norm``) finds the real module.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import threading
import types

_LOAD_LOCK = threading.RLock()


class DeferredModule(types.ModuleType):
    """Stands in for a module until the first attribute read, then forwards to the real one."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.__dict__["_deferred_real"] = None

    def __getattr__(self, attribute: str):  # only called for names the placeholder lacks
        return getattr(self.load(), attribute)

    def load(self) -> types.ModuleType:
        """Import the real module (once, thread-safely) and return it."""
        real = self.__dict__["_deferred_real"]
        if real is None:
            with _LOAD_LOCK:
                real = self.__dict__["_deferred_real"]
                if real is None:
                    if sys.modules.get(self.__name__) is self:
                        del sys.modules[self.__name__]
                    real = importlib.import_module(self.__name__)
                    self.__dict__["_deferred_real"] = real
        return real

    @property
    def loaded(self) -> bool:
        return self.__dict__["_deferred_real"] is not None


def defer(*names: str) -> list[str]:
    """Put a :class:`DeferredModule` in ``sys.modules`` for each name not imported yet.

    Returns the names deferred. A name whose module is not installed is skipped (an import of it
    should fail where it is written, as it would have).
    """
    deferred = []
    with _LOAD_LOCK:
        for name in names:
            if name in sys.modules:
                continue
            try:
                if importlib.util.find_spec(name) is None:
                    continue
            except (ImportError, ValueError):
                continue
            sys.modules[name] = DeferredModule(name)
            deferred.append(name)
    return deferred
