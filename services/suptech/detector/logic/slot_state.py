"""Restoring the slots of the per-entity detectors, their settings shared between instances.

A fresh detector's settings are the very objects its constructor was given (a default, a field
of the engine's config), shared by every instance. Unpickled, each number is an object of its
own (pickle memoizes no floats or ints): an actor's twenty settings cost it about 500 bytes more
once restored than when it was made, a quarter of its state (measured with tracemalloc, 20k
actors: 2,195 B fresh, 2,748 B restored). :func:`set_slots` gives them back one object per value.

:class:`PackedSlots` is how the per-actor detectors are pickled since snapshot version 9: an
instance is its class, its settings as one tuple (the same tuple object for every instance with
the same settings, so a snapshot holds it once and a restore shares it) and its state as a tuple,
rebuilt by one generated function per class that assigns the slots in order. Before, each
instance was a dict of its slots, walked on restore by :func:`set_slots`. Measured with
``python -m perf.detector_decode`` (50k actors, CPU, collector paused): a restore takes 6.5-7.0
us an actor instead of 20.5 (3.0-3.2x), a snapshot 935 bytes an actor instead of 1,257, and
taking it about 10 % more CPU (41 against 37 us an actor, in the snapshot child). The functions
are generated (as :mod:`dataclasses` does) because a loop of ``setattr`` over the names still
took 11.5 us an actor. Older snapshots restore through the classes' ``__setstate__``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, ClassVar

__all__ = ["PackedSlots", "constructor_settings", "set_slots"]

# (type, value) -> the one object of that value. Settings take few distinct values, so this
# stays small; state is never put here.
_SHARED: dict[tuple[type, Any], Any] = {}


def constructor_settings(cls: type) -> frozenset[str]:
    """The names of ``cls``'s constructor parameters: the slots that hold its settings."""
    return frozenset(inspect.signature(cls).parameters)


def set_slots(obj: object, state: dict[str, Any], settings: frozenset[str]) -> None:
    """Set ``obj``'s slots from ``state``; the values of ``settings`` are shared objects."""
    for k, v in state.items():
        if k in settings:
            v = _shared(v)
        object.__setattr__(obj, k, v)


def _shared(v: Any) -> Any:
    t = type(v)
    if (t is float or t is int) and v == v:  # not NaN: it equals nothing, not even itself
        return _SHARED.setdefault((t, v), v)
    return v


class PackedSlots:
    """Pickled as ``(class, settings tuple, state tuple)``: see the module's docstring.

    Settings are the slots named like constructor parameters, state the other slots but those
    in ``_TRANSIENT``, which :meth:`_restored` rebuilds after a restore."""

    __slots__ = ()
    #: Slots that are not state (a cache, a layout derived from the settings).
    _TRANSIENT: ClassVar[frozenset[str]] = frozenset()

    def __reduce__(self) -> tuple[Any, ...]:
        cls = type(self)
        packing = _PACKINGS.get(cls) or _packing(cls)
        settings = packing.settings(self)
        settings = _SETTINGS_TUPLES.setdefault(settings, settings)
        return (_rebuild, (cls, settings, packing.state(self)))

    def _restored(self) -> None:
        """Rebuild the ``_TRANSIENT`` slots once the others are set."""


class _Packing:
    __slots__ = ("settings", "state", "build")

    def __init__(self, cls: type) -> None:
        names = [
            k
            for c in reversed(cls.__mro__)
            for k in c.__dict__.get("__slots__", ())
            if k not in ("__dict__", "__weakref__")
        ]
        params = constructor_settings(cls)
        transient = cls._TRANSIENT  # type: ignore[attr-defined]
        settings = tuple(k for k in names if k in params)
        state = tuple(k for k in names if k not in params and k not in transient)
        hook = cls._restored is not PackedSlots._restored  # type: ignore[attr-defined]
        self.settings = _getter(settings)
        self.state = _getter(state)
        self.build = _builder(settings, state, hook)


def _getter(names: tuple[str, ...]) -> Callable[[Any], tuple[Any, ...]]:
    """``lambda o: (o.a, o.b, ...)`` for these slot names."""
    return _compile("o", f"({''.join(f'o.{k}, ' for k in names)})")


def _builder(
    settings: tuple[str, ...], state: tuple[str, ...], hook: bool
) -> Callable[[type, tuple[Any, ...], tuple[Any, ...]], Any]:
    """The function that makes an instance of a class and assigns its slots in order."""
    lines = ["o = object.__new__(cls)"]
    for names, values in ((settings, "s"), (state, "v")):
        if names:
            lines.append(f"{''.join(f'o.{k}, ' for k in names)}= {values}")
    if hook:
        lines.append("o._restored()")
    body = "\n    ".join(lines)
    namespace: dict[str, Any] = {}
    exec(f"def build(cls, s, v):\n    {body}\n    return o", namespace)  # noqa: S102
    return namespace["build"]  # type: ignore[no-any-return]


def _compile(arg: str, expr: str) -> Callable[[Any], Any]:
    namespace: dict[str, Any] = {}
    exec(f"def f({arg}):\n    return {expr}", namespace)  # noqa: S102
    return namespace["f"]  # type: ignore[no-any-return]


def _packing(cls: type) -> _Packing:
    packing = _PACKINGS[cls] = _Packing(cls)
    return packing


def _rebuild(cls: type, settings: tuple[Any, ...], state: tuple[Any, ...]) -> Any:
    """Unpickle a :class:`PackedSlots` instance."""
    packing = _PACKINGS.get(cls) or _packing(cls)
    return packing.build(cls, settings, state)


_PACKINGS: dict[type, _Packing] = {}
# Settings tuple -> the one tuple object of those settings (few distinct ones, as _SHARED).
_SETTINGS_TUPLES: dict[tuple[Any, ...], tuple[Any, ...]] = {}
