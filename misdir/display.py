"""Short views of result records for notebooks and the REPL: a `__repr__` with the headline numbers, a small
HTML table (`_repr_html_`), and the record as a pandas DataFrame (`to_pandas`, pandas imported only then).

A record lists what it shows in `_display_rows()`: one dict per row, values as they are (an `Estimate` shows as
`value [low, high]`, an effect beside a random null as its estimate and its percentile in the null). Records stay
dataclasses (`repr=False` only): their equality and `to_dict` are their own.
"""

from __future__ import annotations

import dataclasses
import html
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

from misdir.stats import Estimate, format_estimate

MAX_ROWS = 12
"""Rows a `__repr__` prints and a HTML table shows at most (`to_pandas()` has them all)."""


def short_name(spec: str) -> str:
    """A model spec as a reader wants it printed: an absolute path relative to the working directory (or its last
    two parts where that climbs more than two folders); a hub id, `embedded` or a relative path as given."""
    if not os.path.isabs(spec):
        return spec
    try:
        relative = os.path.relpath(spec)
    except ValueError:  # another drive
        relative = spec
    if Path(relative).parts.count("..") <= 2 and not os.path.isabs(relative):
        return relative
    return str(Path(*Path(spec).parts[-2:]))


def layer_text(layers: Sequence[int] | None) -> str:
    """`0-29` for a run of layers, `3, 7, 15` otherwise, `all` for None."""
    if layers is None:
        return "all"
    values = [int(x) for x in layers]
    if len(values) > 2 and values == list(range(values[0], values[-1] + 1)):
        return f"{values[0]}-{values[-1]}"
    return ", ".join(map(str, values))


def cell_text(value: Any, spec: str = "+.3f") -> str:
    """One value as a table cell."""
    null = getattr(value, "null", None)
    if hasattr(value, "estimate"):  # an Effect: its estimate, and where it falls among random directions
        text = cell_text(value.estimate, spec)
        return text if null is None else f"{text} (p{null.percentile:.0f} of null)"
    if isinstance(value, Estimate):
        return format_estimate(value, spec)
    if isinstance(value, float):
        return f"{value:g}"
    if value is None:
        return "-"
    if isinstance(value, tuple | list):
        return ", ".join(map(str, value))
    return str(value)


def flat(row: Mapping[str, Any]) -> dict[str, Any]:
    """A row with numbers only in its estimates: `name`, `name_low`, `name_high` (and an effect's `name_null_*`)."""
    out: dict[str, Any] = {}
    for key, value in row.items():
        null = getattr(value, "null", None)
        value = getattr(value, "estimate", value)
        if isinstance(value, Estimate):
            out |= {key: value.value, f"{key}_low": value.low, f"{key}_high": value.high, f"{key}_n": value.n}
            if null is not None:
                out |= {f"{key}_null_{k}": v for k, v in null._asdict().items() if k != "value"}
        else:
            out[key] = value
    return out


class Record:
    """What a result record gets from listing its rows: `__repr__`, `_repr_html_` and `to_pandas()`."""

    _formats: ClassVar[dict[str, str]] = {}
    """Format specs of some columns (default `+.3f`)."""

    def _display_rows(self) -> list[dict[str, Any]]:
        """The rows shown (a sweep leaves its random directions to `to_pandas`); by default one, of the dataclass's
        fields, a model spec shortened and layers as a range, a dict (verdicts, provenance) left out."""
        row = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}  # type: ignore[arg-type]
        shown = {k: v for k, v in row.items() if not isinstance(v, dict)}
        if isinstance(shown.get("model"), str):
            shown["model"] = short_name(shown["model"])
        if "layers" in shown:
            shown["layers"] = layer_text(shown["layers"])
        return [shown]

    def _frame_rows(self) -> list[dict[str, Any]]:
        """The rows `to_pandas` holds."""
        return self._display_rows()

    def _display_note(self) -> str:
        return ""

    def _table(self) -> tuple[list[str], list[list[str]], str]:
        rows = self._display_rows()
        columns = list(dict.fromkeys(k for row in rows for k in row))
        cells = [[cell_text(r.get(c), self._formats.get(c, "+.3f")) for c in columns] for r in rows[:MAX_ROWS]]
        notes = [f"{len(rows) - MAX_ROWS} more rows"] if len(rows) > MAX_ROWS else []
        notes += [self._display_note()] if self._display_note() else []
        return columns, cells, "; ".join(notes)

    def __repr__(self) -> str:
        columns, cells, note = self._table()
        name = type(self).__name__
        if len(cells) == 1 and not note and not isinstance(self, RowsRecord):  # one record: one line
            return f"{name}({', '.join(f'{c}={v}' for c, v in zip(columns, cells[0], strict=True))})"
        widths = [max([len(c), *(len(r[i]) for r in cells)]) for i, c in enumerate(columns)]
        lines = ["  ".join(t.ljust(w) for t, w in zip(row, widths, strict=True)) for row in [columns, *cells]]
        return "\n".join([f"{name}: {len(self._display_rows())} rows", *lines, *([note] if note else [])])

    def _repr_html_(self) -> str:
        columns, cells, note = self._table()
        head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(v)}</td>" for v in row) + "</tr>" for row in cells)
        caption = html.escape(type(self).__name__ + (f" ({note})" if note else ""))
        return f"<table><caption>{caption}</caption><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"

    def to_pandas(self) -> Any:
        """The record as a pandas DataFrame, one row per row, each estimate as `name`, `name_low`, `name_high`.

        pandas comes with `datasets` (a misdir dependency); it is imported here, and only here."""
        try:
            import pandas as pd
        except ImportError:
            raise ImportError("to_pandas() needs pandas, which is not installed: pip install pandas") from None
        return pd.DataFrame([flat(row) for row in self._frame_rows()])


class RowsRecord(Record):
    """A sweep: its `rows` (records themselves) shown one line each, the random-direction ones (`_hidden`) only in
    `to_pandas()`, beside which the named directions' effects give their percentile in that null."""

    rows: Sequence[Record]

    @staticmethod
    def _hidden(row: Any) -> bool:
        return False

    def _display_rows(self) -> list[dict[str, Any]]:
        return [r._display_rows()[0] for r in self.rows if not self._hidden(r)]

    def _frame_rows(self) -> list[dict[str, Any]]:
        return [r._display_rows()[0] for r in self.rows]

    def _display_note(self) -> str:
        hidden = sum(map(self._hidden, self.rows))
        return f"{hidden} random-direction rows in to_pandas()" if hidden else ""
