"""A command's options derived from its config dataclass (misdir.configs), as simple-parsing does: each field
gives one option (its name, type, default and help), a nested config's fields are flattened into the same
command, so adding a field adds the option and its help and the CLI cannot drift from the library.

Types: str, int, float, Path, bool (a --x/--no-x flag), `X | None`, `tuple[X, ...]` (a repeatable option, or
with `comma` one comma-separated value), `Literal[...]` or `choices` (checked, one line naming the choices).
"""

from __future__ import annotations

import dataclasses
import inspect
import types
from collections.abc import Callable
from dataclasses import MISSING, dataclass, replace
from typing import Any, Literal, Optional, TypeVar, Union, cast, get_args, get_origin, get_type_hints

import typer

from misdir.cli.common import _fail
from misdir.configs import DEVICE_HELP, ConfigError, choices_of, device_problem, show

Config = TypeVar("Config")


@dataclass(frozen=True)
class Option:
    """One option: a config field (`group`: the nested config field it is in; `override`: unset keeps the
    value of the nested config's `base`)."""

    field: dataclasses.Field
    help: str
    kind: type
    optional: bool
    many: bool
    comma: bool
    choices: tuple[Any, ...] | None
    group: str | None = None
    override: bool = False

    @property
    def name(self) -> str:
        return self.field.name

    @property
    def flag(self) -> str:
        return self.field.metadata.get("flag") or "--" + self.name.replace("_", "-")

    @property
    def default(self) -> Any:
        """The option's default: the field's (`...`: required), or None (unset) in an overriding group."""
        if self.override:
            return None
        return ... if required(self.field) else self.field.default


def _option(f: dataclasses.Field, hint: Any, help: str, **extra: Any) -> Option:
    """The option of field `f` of type `hint`."""
    choices = choices_of(f, hint)
    optional = get_origin(hint) in (Union, types.UnionType) and type(None) in get_args(hint)
    if optional:
        hint = next(arg for arg in get_args(hint) if arg is not type(None))
    many = get_origin(hint) is tuple
    if many:
        hint = get_args(hint)[0]
    kind = type(get_args(hint)[0]) if get_origin(hint) is Literal else hint
    comma = extra.pop("comma", f.metadata.get("comma", False))
    return Option(f, help, kind, optional, many, bool(comma), choices, **extra)


def options(cls: type) -> list[Option]:
    """The options of config class `cls`, nested configs flattened (their field names must not clash)."""
    hints, helps, found = get_type_hints(cls), field_help(cls), []
    own = cls.__dict__.get("__annotations__", {})
    for f in sorted(dataclasses.fields(cls), key=lambda f: f.name not in own):  # a command's own fields first
        inner = hints[f.name]
        if not (isinstance(inner, type) and dataclasses.is_dataclass(inner)):
            found.append(_option(f, inner, helps[f.name]))
            continue
        override, notes = "base" in f.metadata, f.metadata.get("notes", {})
        inner_hints, inner_helps = get_type_hints(inner), field_help(inner)
        for g in dataclasses.fields(inner):
            text = DEVICE_HELP if g.name == "device" else inner_helps[g.name] + notes.get(g.name, "")
            if override and f.metadata.get("field_defaults", True):
                text += _default_text(g, f.metadata.get("other_defaults", {}))
            found.append(
                _option(
                    g,
                    inner_hints[g.name],
                    text,
                    group=f.name,
                    override=override,
                    comma=g.name in f.metadata.get("comma", ()),
                )
            )
    names = [o.name for o in found]
    clashes = {n for n in names if names.count(n) > 1}
    if clashes:
        raise TypeError(f"{cls.__name__}: options {sorted(clashes)} come from two fields")
    return found


def _default_text(g: dataclasses.Field, others: dict[str, Any]) -> str:
    """` Default: X.` for a nested config's field, and its value under each other base (`other_defaults`: label
    -> config, e.g. the embedded model's recipe) where that differs."""
    own = None if g.default in (None, dataclasses.MISSING) else g.default
    extra = [f"{getattr(c, g.name)} {label}" for label, c in others.items() if getattr(c, g.name) != own]
    if own is None:
        return f" Default: {'; '.join(extra)}." if extra else ""
    return f" Default: {own}" + (f" ({'; '.join(extra)})." if extra else ".")


def _parameters(option: Option) -> list[inspect.Parameter]:
    """The typer parameter(s) of an option: itself, and a hidden one for its former name (`alias`)."""
    default = option.default
    if option.comma:
        annotation: Any = str
        if isinstance(default, tuple):
            default = ",".join(map(str, default))
    elif option.many:
        annotation = list[option.kind]  # type: ignore[name-defined]
        if isinstance(default, tuple):
            default = list(default)
    else:
        annotation = option.kind
    if option.optional or default is None:
        annotation = Optional[annotation]  # noqa: UP007 (typer reads typing.Optional)
    flag = option.flag
    decls = [f"{flag}/--no-{flag[2:]}"] if option.kind is bool else [flag]
    metavar = "|".join(map(str, option.choices)) if option.choices and not option.many else None
    help = option.help.replace("[", "\\[")  # rich markup would eat [layer, d_model]
    if option.field.metadata.get("argument"):
        info = typer.Argument(default, help=help)
    else:
        info = typer.Option(default, *decls, help=help, metavar=metavar)
    found = [inspect.Parameter(option.name, inspect.Parameter.KEYWORD_ONLY, default=info, annotation=annotation)]
    alias = option.field.metadata.get("alias")
    if alias:
        hidden = typer.Option(None, alias, hidden=True, help=f"the former name of {flag}")
        found.append(
            inspect.Parameter(
                f"{option.name}_alias",
                inspect.Parameter.KEYWORD_ONLY,
                default=hidden,
                annotation=Optional[annotation],  # noqa: UP007 (typer reads Optional, not a runtime X | None)
            )
        )
    return found


def _parse(option: Option, raw: Any) -> Any:
    """A value as typer gives it, as the config holds it; bad input is refused naming the option (exit 2)."""
    if raw is None or (option.many and not option.comma and not raw and option.default is None):
        return None
    if option.name == "device":
        problem = device_problem(raw)
        if problem:
            _fail(f"--device {raw!r}: {problem}", usage=True)
        return None if raw == "auto" else raw
    if option.comma:
        what = {int: "integers", float: "numbers"}.get(option.kind, "values")
        try:
            values = tuple(option.kind(part.strip()) for part in raw.split(",") if part.strip())
        except ValueError:
            _fail(f"{option.flag} {raw!r}: expected comma-separated {what}", usage=True)
        if not values:
            _fail(f"{option.flag} {raw!r}: no {what}", usage=True)
        return values
    return tuple(raw) if option.many else raw


def _alias(option: Option, value: Any, former: Any) -> Any:
    """An option's value given under its former (hidden) name too: one of them, or the same value."""
    if former is None:
        return value
    if value is not None and value != former:
        _fail(f"{option.field.metadata['alias']} is the former name of {option.flag}: give one of them", usage=True)
    return former


def build(cls: type[Config], values: dict[str, Any]) -> Config:
    """The config `cls` of a command's parsed option values; a bad one is refused in one line, exit 2."""
    found = options(cls)
    flags = {o.name: o.flag for o in found}
    outer: dict[str, Any] = {}
    groups: dict[str, dict[str, Any]] = {}  # the nested configs' values
    for option in found:
        value = _parse(option, values.get(option.name))
        if option.field.metadata.get("alias"):
            value = _alias(option, value, _parse(option, values.get(f"{option.name}_alias")))
        (outer if option.group is None else groups.setdefault(option.group, {}))[option.name] = value
    nested = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    hints = get_type_hints(cls)
    try:
        for name, given in groups.items():
            base = nested[name].metadata.get("base")
            if base is None:
                outer[name] = hints[name](**given)
            else:
                outer[name] = replace(base(outer, given), **{k: v for k, v in given.items() if v is not None})
            if callable(getattr(outer[name], "validate", None)):
                outer[name].validate()
        return cls(**outer)
    except ConfigError as error:
        _fail(f"{flags.get(error.field, error.field)} {show(error.value)}: {error.problem}", usage=True)
    except ValueError as error:
        _fail(error, usage=True)


def command(cls: type[Config]) -> Callable[[Callable[[Config], None]], Callable[..., None]]:
    """Decorate `body(config)` into a typer command whose options are `cls`'s fields."""

    def decorate(body: Callable[[Config], None]) -> Callable[..., None]:
        def callback(**values: Any) -> None:
            body(build(cls, values))

        parameters = [p for option in options(cls) for p in _parameters(option)]
        callback.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
        callback.__annotations__ = {p.name: p.annotation for p in parameters}
        for attribute in ("__name__", "__qualname__", "__doc__", "__module__"):
            setattr(callback, attribute, getattr(body, attribute))
        callback.config_class = cls  # type: ignore[attr-defined]
        return callback

    return decorate


def field_help(cls: type) -> dict[str, str]:
    """Each field's help: `metadata["help"]`, else the docstring under it (`FinetuneConfig`'s style)."""
    import ast

    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__[:-1]):
        if not dataclasses.is_dataclass(klass):
            continue
        try:
            body = cast(ast.ClassDef, ast.parse(inspect.getsource(klass)).body[0]).body  # a class's source
        except (OSError, TypeError):  # no source (a class made at run time): metadata help only
            continue
        for node, after in zip(body, body[1:], strict=False):
            value = after.value if isinstance(after, ast.Expr) else None
            if isinstance(node, ast.AnnAssign) and isinstance(value, ast.Constant):
                docs[ast.unparse(node.target)] = " ".join(str(value.value).split())
    return {f.name: f.metadata.get("help") or docs.get(f.name, "") for f in dataclasses.fields(cls)}


def required(f: dataclasses.Field) -> bool:
    return f.default is MISSING and f.default_factory is MISSING
