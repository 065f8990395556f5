"""One registry style for everything mixplan looks up by name: loss models
(:func:`engine.models.register_model`), strategies (:func:`engine.strategies.register`), runner
kinds (:func:`engine.runners.registry.register_runner`) and executors
(:func:`engine.dispatch.executors.register_executor`).

A :class:`Registry` maps a name to an implementation: a class or factory, or a lazy reference
``"package.module:attr"`` (also ``("package.module", "attr")``) imported on first use, so listing
names never imports torch or BoTorch. ``register`` works directly or as a class decorator::

    from engine.strategies import register
    from engine.strategies.base import Strategy

    @register("my-strategy")
    class Mine(Strategy): ...

An unknown name is a :class:`~engine.errors.NotFoundError` that lists the names and suggests the
closest one. Registering a name twice with a different implementation is refused (a typo must
not replace a built-in in silence); re-registering the same one (a module imported again, or
the class behind a lazy reference) is fine.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import MutableMapping
from typing import Any

from engine.errors import NotFoundError


def _ref(target: Any) -> tuple[str, str] | None:
    """(module, attr) of a lazy reference, else None."""
    if isinstance(target, tuple) and len(target) == 2 and all(isinstance(x, str) for x in target):
        return target[0], target[1]
    if isinstance(target, str) and ":" in target:
        mod, attr = target.split(":", 1)
        return mod, attr
    return None


class Registry:
    """Names -> implementations (module docstring). ``entries`` may be an existing dict, which
    is then the registry's own storage (kept for modules that expose theirs)."""

    def __init__(self, what: str, entries: MutableMapping[str, Any] | None = None) -> None:
        self.what = what
        self.entries: MutableMapping[str, Any] = entries if entries is not None else {}

    def register(self, name: str, target: Any = None) -> Any:
        """Register ``target`` under ``name``; without ``target``, a class decorator."""
        if target is None:
            def deco(obj):
                self.register(name, obj)
                return obj

            return deco
        if not isinstance(name, str) or not name:
            raise ValueError(f"a {self.what} name must be a non-empty string, got {name!r}")
        old = self.entries.get(name)
        if old is not None and old is not target and not self._same(old, target):
            raise ValueError(f"a {self.what} named {name!r} is already registered ({old!r})")
        self.entries[name] = target
        return target

    @staticmethod
    def _same(old: Any, new: Any) -> bool:
        """Whether ``new`` is the object a lazy ``old`` refers to (or the same reference)."""
        ref_old, ref_new = _ref(old), _ref(new)
        if ref_old is not None and ref_new is not None:
            return ref_old == ref_new
        if ref_old is not None:
            return getattr(new, "__module__", None) == ref_old[0] and getattr(new, "__qualname__", None) == ref_old[1]
        return False

    def names(self) -> list[str]:
        return list(self.entries)

    def __contains__(self, name: object) -> bool:
        return name in self.entries

    def missing(self, name: str) -> NotFoundError:
        close = difflib.get_close_matches(str(name), self.names(), n=1)
        return NotFoundError(f"no {self.what} named '{name}'. {self.what.capitalize()}s: {', '.join(self.names())}."
                             + (f" Did you mean '{close[0]}'?" if close else ""))

    def get(self, name: str) -> Any:
        """The implementation of ``name`` (a lazy reference is imported now and remembered)."""
        if name not in self.entries:
            raise self.missing(name)
        target = self.entries[name]
        ref = _ref(target)
        if ref is None:
            return target
        mod = importlib.import_module(ref[0])
        if not ref[1]:
            return mod
        obj = getattr(mod, ref[1])
        if self.entries.get(name) is target:  # importing may have registered the object itself
            self.entries[name] = obj
        return obj

    def reference(self, name: str) -> tuple[str, str] | None:
        """The (module, attr) of a still-lazy entry (None once resolved or for an object)."""
        return _ref(self.entries.get(name))


__all__ = ["Registry"]
