"""Result records as a notebook shows them: a short repr, a small HTML table, a pandas frame; equality and to_dict
unchanged."""

from __future__ import annotations

import json
import os

import pytest
import torch

from misdir.directions import DirectionSet
from misdir.display import layer_text, short_name
from misdir.evaluate import ContrastResult
from misdir.experiments import AblationRow, AblationSweep, SteeringGrid, SteeringRow
from misdir.judged.sweeps import JudgedSteeringRow, JudgedSweep
from misdir.stats import Estimate
from misdir.sweep import AgainstNull, Effect

E = Estimate(0.25, -0.5, 1.0, 90)


def result(model: str = "embedded") -> ContrastResult:
    return ContrastResult.from_scores(model, "general", None, [0.1 * i for i in range(90)], [-3.0] * 90)


def ablation_row(direction: str) -> AblationRow:
    null = None if direction.startswith("random") else AgainstNull(0.25, 0.0, -0.1, 0.1, 97.5, 20)
    return AblationRow(
        "medical-bad", direction, "general", None, ("resid_pre",), "skip-first", 0.0, E, E, E, E, E, E,
        Effect(E, null), Effect(E, null),
    )  # fmt: skip


def sweep() -> AblationSweep:
    rows = [ablation_row("medical-bad direction"), *(ablation_row(f"random {i}") for i in range(20))]
    return AblationSweep({"settings": {"layers": None, "site": ["resid_pre"], "positions": "skip-first"}}, rows)


def test_a_contrast_result_shows_its_headline_not_its_items():
    r = result()
    text = repr(r)
    assert len(text) < 250 and "margin=+4.450 [" in text and "items=90" in text
    assert "0.1, 0.2" not in text and "-3.0, -3.0" not in text
    html = r._repr_html_()
    assert html.startswith("<table>") and "<th>margin</th>" in html and "-3.0, -3.0" not in html
    assert r == ContrastResult.from_dict(json.loads(json.dumps(r.to_dict())))  # equality and round trip unchanged
    assert r != result("other")


def test_a_direction_set_shows_its_shape_not_its_tensor():
    d = DirectionSet(torch.randn(30, 576), meta={"method": "model-diff", "model": {"spec": "embedded"}})
    text = repr(d)
    assert text.startswith("DirectionSet(shape=[30, 576], site=resid_post, method=model-diff, model=embedded")
    assert len(text) < 200 and "tensor" not in text
    assert "<td>[30, 576]</td>" in d._repr_html_()


def test_a_sweep_shows_its_named_rows_and_leaves_the_random_ones_to_pandas():
    s = sweep()
    text = repr(s)
    assert text.splitlines()[0] == "AblationSweep: 1 rows"
    assert "medical-bad direction" in text and "random 3" not in text and "(p98 of null)" in text
    assert "20 random-direction rows in to_pandas()" in text and "provenance" not in text
    assert "<caption>AblationSweep (20 random-direction rows in to_pandas())</caption>" in s._repr_html_()
    assert AblationSweep.from_dict(json.loads(json.dumps(s.to_dict()))) == s
    assert "AblationRow(model=medical-bad, direction=random 0, pairs=general, layers=all" in repr(s.rows[1])


def test_steering_and_judged_records_have_short_reprs():
    row = SteeringRow(
        "embedded", "mean EM", "general", (15,), ("resid_post",), "skip-first", 0.2, E, E, "resid", Effect(E), Effect(E)
    )
    grid = SteeringGrid({}, {"general": result()}, [row])
    assert repr(grid).splitlines()[1].split()[:2] == ["model", "direction"]
    judged = JudgedSteeringRow("mean EM", 15, 0.2, "general", E, E, Effect(E), Effect(E), {"score": 3})
    sweep = JudgedSweep({}, {}, [judged])
    assert "induced" in repr(sweep) and "verdicts" not in repr(sweep)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("embedded", "embedded"),
        ("Qwen/Qwen2.5-7B-Instruct", "Qwen/Qwen2.5-7B-Instruct"),
        ("checkpoints/x", "checkpoints/x"),
        (os.path.join(os.getcwd(), "checkpoints", "x"), os.path.join("checkpoints", "x")),
        ("/a/b/c/d/e/f/g/h/i/j/medical-bad", "j/medical-bad"),
    ],
)
def test_short_names(spec, expected, monkeypatch, tmp_path):
    if spec.startswith("/a/"):  # from a working directory four folders deep or more: the last two parts
        monkeypatch.chdir(tmp_path)
    assert short_name(spec) == expected


def test_layer_text():
    assert [layer_text(x) for x in (None, [0, 1, 2, 3], [15], [3, 7])] == ["all", "0-3", "15", "3, 7"]


def test_the_contrast_rows_have_a_header_and_relative_paths():
    r = result(os.path.join(os.getcwd(), "checkpoints", "smollm2-135m", "medical-bad"))
    header, row = ContrastResult.header(), r.row()
    assert header.split()[:3] == ["model", "pairs", "margin"]
    assert row.startswith(os.path.join("checkpoints", "smollm2-135m", "medical-bad") + " ")
    assert row.index("general") == header.index("pairs") and row.index("+4.450") == header.index("margin")


def test_to_pandas_splits_estimates_into_columns():
    pytest.importorskip("pandas")
    frame = sweep().to_pandas()
    assert len(frame) == 21 and frame["direction"].iloc[0] == "medical-bad direction"
    assert {"share_removed", "share_removed_low", "share_removed_high", "share_removed_null_percentile"} <= set(frame)
    assert frame["share_removed_low"].iloc[0] == -0.5
    one = result().to_pandas()
    assert len(one) == 1 and one["margin"].iloc[0] == pytest.approx(4.45)


def test_to_pandas_names_the_install_when_pandas_is_missing(monkeypatch):
    import builtins

    real = builtins.__import__

    def no_pandas(name, *args, **kwargs):
        if name == "pandas":
            raise ImportError("No module named 'pandas'")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_pandas)
    with pytest.raises(ImportError, match="pip install pandas"):
        result().to_pandas()
