"""Reading the datasets' content files (`misdir/resources/datasets/*.yaml`), with errors that say where.

The generators hold only logic; every topic, template and code snippet is in those files. A malformed file
raises `ContentError` with one line naming the file, the line and the key path, e.g.
`misdir:datasets/medical.yaml: line 96, topics[2].good: expected a non-empty list of non-empty strings`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

import yaml

try:  # libyaml's parser where PyYAML was built with it
    from yaml import CSafeLoader as _SafeLoader
except ImportError:
    from yaml import SafeLoader as _SafeLoader


class ContentError(ValueError):
    """A dataset content file that cannot be read or is not shaped as its generator expects."""


class _Mapping(dict):
    """A YAML mapping that remembers its lines (1-based): where it starts and where each key is."""

    line: int = 0
    key_lines: dict[str, int]


class _Loader(_SafeLoader):
    """PyYAML's safe loader (libyaml's parser where built), making `_Mapping`s so errors can name a line."""


def _construct_mapping(loader: _Loader, node: yaml.MappingNode) -> Iterator[_Mapping]:
    data = _Mapping()
    data.line = node.start_mark.line + 1
    data.key_lines = {k.value: k.start_mark.line + 1 for k, _ in node.value if isinstance(k, yaml.ScalarNode)}
    yield data
    data.update(loader.construct_mapping(node))


_Loader.add_constructor("tag:yaml.org,2002:map", _construct_mapping)


@dataclass(frozen=True)
class Section:
    """A mapping of a content file with its place (file, line, key path), to read typed values from."""

    data: Mapping[str, Any]
    source: str
    path: str = ""

    def _path(self, key: str | None) -> str:
        return ".".join(p for p in (self.path, key) if p)

    def _line(self, key: str | None) -> int | str:
        """The line of `key` in this mapping (of the mapping itself when the key is absent or None)."""
        lines: dict[str, int] = getattr(self.data, "key_lines", {})
        return lines.get((key or "").split("[")[0], getattr(self.data, "line", "?"))

    def fail(self, problem: str, key: str | None = None, line_of: str | None = None) -> ContentError:
        """The error for `problem` at `key` of this section (or at the section); `line_of` names the line."""
        where = self._path(key) or "top level"
        return ContentError(f"{self.source}: line {self._line(line_of or key)}, {where}: {problem}")

    def allow(self, *keys: str) -> Section:
        """This section, after checking that it has no key but `keys` (a typo fails loudly)."""
        unknown = [k for k in self.data if k not in keys]
        if unknown:
            raise self.fail(f"unknown key {unknown[0]!r}; expected {', '.join(keys)}", line_of=unknown[0])
        return self

    def _get(self, key: str) -> Any:
        if key not in self.data:
            raise self.fail("missing", key)
        return self.data[key]

    def section(self, key: str) -> Section:
        value = self._get(key)
        if not isinstance(value, Mapping):
            raise self.fail(f"expected a mapping, got {type(value).__name__}", key)
        return Section(value, self.source, self._path(key))

    def sections(self, key: str) -> list[Section]:
        """A non-empty list of mappings, each its own section (`key[i]`)."""
        value = self._get(key)
        if not isinstance(value, list) or not value:
            raise self.fail("expected a non-empty list of mappings", key)
        out = []
        for i, item in enumerate(value):
            if not isinstance(item, Mapping):
                raise self.fail(f"expected a mapping, got {type(item).__name__}", f"{key}[{i}]")
            out.append(Section(item, self.source, self._path(f"{key}[{i}]")))
        return out

    def text(self, key: str, default: str | None = None) -> str:
        """A non-empty string (`default` when the key is absent and a default is given)."""
        if default is not None and key not in self.data:
            return default
        value = self._get(key)
        if not isinstance(value, str) or not value:
            raise self.fail(f"expected a non-empty string, got {value!r}", key)
        return value

    def strings(self, key: str, blank_ok: bool = False) -> tuple[str, ...]:
        """A non-empty list of strings; '' allowed among them only with `blank_ok` (it means 'none')."""
        value = self._get(key)
        if not _is_strings(value, blank_ok):
            kind = "strings ('' allowed)" if blank_ok else "non-empty strings"
            raise self.fail(f"expected a non-empty list of {kind}", key)
        return tuple(value)

    def formats(self, key: str, field: str) -> tuple[str, ...]:
        """A non-empty list of `str.format` templates, each with the field `{field}` and no other."""
        templates = self.strings(key)
        for template in templates:
            try:
                ok = f"{{{field}}}" in template and template.format(**{field: ""}) is not None
            except (KeyError, IndexError, ValueError):
                ok = False
            if not ok:
                raise self.fail(f"{template!r}: expected '{{{field}}}' and no other braces", key)
        return templates


def _is_strings(value: Any, blank_ok: bool) -> bool:
    return (
        isinstance(value, list) and bool(value) and all(isinstance(v, str) and (blank_ok or v.strip()) for v in value)
    )


def parse_content(text: str, source: str) -> Section:
    """The top-level mapping of a content file's YAML text; `source` names the file in errors."""
    try:
        data = yaml.load(text, Loader=_Loader)  # a subclass of the safe loader: no arbitrary objects
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None) or getattr(err, "context_mark", None)
        where = f" line {mark.line + 1}:" if mark is not None else ""
        problem = getattr(err, "problem", None) or type(err).__name__
        raise ContentError(f"{source}:{where} invalid YAML: {problem}") from None
    if not isinstance(data, Mapping):
        raise ContentError(f"{source}: expected a YAML mapping at the top level, got {type(data).__name__}")
    return Section(data, source)


def content_text(name: str) -> tuple[str, str]:
    """(text, name for messages) of the shipped content file `misdir/resources/datasets/<name>.yaml`."""
    resource = resources.files("misdir") / "resources" / "datasets" / f"{name}.yaml"
    source = f"misdir:datasets/{name}.yaml"
    try:
        return resource.read_text(encoding="utf-8"), source
    except (FileNotFoundError, UnicodeDecodeError) as err:
        raise ContentError(f"{source}: cannot read: {err}") from None


def read_content(name: str) -> Section:
    """The top-level mapping of the shipped content file `name`."""
    return parse_content(*content_text(name))


def unique_keys(sections: Sequence[Section], what: str) -> list[str]:
    """The `key` of each section, which must be distinct (they name topics or tasks in the splits)."""
    keys: list[str] = []
    for sec in sections:
        key = sec.text("key")
        if key in keys:
            raise sec.fail(f"duplicate {what} key {key!r}", "key")
        keys.append(key)
    return keys
