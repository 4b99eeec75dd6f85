"""Runtime checks of misdir's jaxtyping annotations while the tests run (installed by conftest.py).

`install_import_hook("misdir", "shape_check.arrays_only")` wraps every misdir function in `jaxtyped` with this
checker: tensors annotated with jaxtyping array types (`Float[Tensor, "batch pos d_model"]`, alone, optional or in
a union) must match their dtype and shape, with each named axis the same size across one call. Checked: what
every function returns, and the arguments of private functions (`_name`). Public functions and constructors
check their own inputs with the messages the tests assert (a wrong shape handed in is refused by misdir, not
here); other annotations are left alone.
"""

from __future__ import annotations

import functools
import inspect
import types
import typing
from typing import Any

import torch
from jaxtyping import AbstractArray


def _array_types(hint: Any) -> tuple[type, ...]:
    """The jaxtyping array types a hint allows (empty: not an array annotation)."""
    if isinstance(hint, type) and issubclass(hint, AbstractArray):
        return (hint,)
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return tuple(t for arg in typing.get_args(hint) for t in _array_types(arg))
    return ()


def _check(where: str, value: Any, allowed: tuple[type, ...]) -> None:
    if isinstance(value, torch.Tensor) and not any(isinstance(value, t) for t in allowed):
        names = " | ".join(t.__name__ for t in allowed)
        raise TypeError(f"{where}: a tensor of shape {tuple(value.shape)} and dtype {value.dtype} is not {names}")


def arrays_only(fn: Any) -> Any:
    """`fn`, checking its jaxtyping-annotated tensors (see the module docstring); unchanged when it has none."""
    try:
        hints = typing.get_type_hints(fn)
        signature = inspect.signature(fn)
    except Exception:  # names only importable for type checkers, builtins without signatures: nothing to check
        return fn
    arrays = {name: allowed for name, hint in hints.items() if (allowed := _array_types(hint))}
    returns = arrays.pop("return", None)
    private = fn.__name__.startswith("_") and not fn.__name__.startswith("__")
    if not private:
        arrays = {}
    if not arrays and not returns:
        return fn

    @functools.wraps(fn)
    def checked(*args: Any, **kwargs: Any) -> Any:
        bound = signature.bind(*args, **kwargs)
        for name, allowed in arrays.items():
            if name in bound.arguments:
                _check(f"{fn.__qualname__}({name}=...)", bound.arguments[name], allowed)
        out = fn(*args, **kwargs)
        if returns:
            _check(f"{fn.__qualname__} returned", out, returns)
        return out

    return checked
