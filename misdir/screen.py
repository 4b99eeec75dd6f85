"""Screen training data before finetuning: the projection difference of persona vectors (Chen et al. 2025,
arXiv 2507.21509).

For each example (a prompt and the answer a finetune would learn), the base model's activations at one layer are
averaged over the answer's tokens and projected on the unit trait direction; the same is done for the base
model's own greedy answer to the same prompt, and the example's score is the first minus the second. A positive
score: the data's answer sits further along the direction than what the model already says, so training on it
would push the model that way. A file's mean score comes with a bootstrap interval over its examples, beside the
same mean along seeded random unit directions: answers unlike the model's own differ along every direction, and
only a mean outside the random ones' range says something about this direction.

`screen` runs it resumably in an output folder: each finished file is one record of `files.jsonl`, reused by a
rerun with the same settings; `scores.jsonl`, `summary.json` and the figure are drawn from the records.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor

from misdir.cache import cache_activations
from misdir.data import DataError, load_chat_jsonl
from misdir.directions import DirectionSet
from misdir.generate import generate
from misdir.interventions import describe_directions
from misdir.io import RecordLog, atomic_path, check_settings, run_lock, sha256_file, write_json_atomic
from misdir.models import ModelLike, as_model
from misdir.plots import optional_figure, save_figure
from misdir.provenance import provenance
from misdir.questions import Question
from misdir.stats import Estimate, bootstrap_mean
from misdir.sweep import Effect, compare_to_null, random_directions
from misdir.tokens import Conversation

DEFAULT_DIRECTION = Path("checkpoints/smollm2-135m/directions/em-minus-control.safetensors")
"""The direction `misdir screen --model embedded` uses unless told otherwise: the mean of the four EM organisms'
unit model-diff directions minus the mean of the three shipped controls', per layer, the best of the candidates
`scripts/screening_study.py` compared (figures/README.md, "Screening"): at layer 15, AUROC 0.69 [0.65, 0.74] of the
EM datasets' examples against the controls', above all 20 random directions (0.39-0.61). In-sample for misdir's own
datasets (the directions come from finetunes on them); with the other domains' directions only, 0.63 [0.58, 0.67]."""

MAX_NEW_TOKENS = 128
"""Longest greedy answer of the base model, in tokens, unless told otherwise."""


class Differences(NamedTuple):
    """Per example: the mean activation over the data's answer tokens minus that over the base model's own
    greedy answer (a NaN row where the base answered nothing), and those answers."""

    vectors: Float[Tensor, "example d_model"]
    base_answers: list[str]


class ExampleScore(NamedTuple):
    """One line of `scores.jsonl`: an example's projection difference (None where the base answered nothing)."""

    file: str
    index: int  # type: ignore[assignment]  # a field may shadow tuple.index; scores.jsonl names it so
    score: float | None


@dataclass(frozen=True)
class FileScreen:
    """One data file's screen: its mean score (95% bootstrap interval over examples) beside the same mean along
    random unit directions (None without them)."""

    file: str
    sha256: str
    n_examples: int
    n_unscored: int
    """Examples left out because the base model's greedy answer was empty."""
    mean: Effect

    def to_dict(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "sha256": self.sha256,
            "n_examples": self.n_examples,
            "n_unscored": self.n_unscored,
            **self.mean.to_dict("mean"),
        }


class Screen(NamedTuple):
    """What `screen` returns: the per-file summaries, the per-example scores and the files it wrote."""

    files: list[FileScreen]
    scores: list[ExampleScore]
    written: list[Path]


def load_screen_data(path: str | Path) -> list[Conversation]:
    """A chat JSONL file's examples as conversations; each must be one prompt (an optional system message and one
    user turn) and its answer, since the base model answers the same prompt. Raises DataError naming file and line."""
    conversations: list[Conversation] = [[dict(m) for m in example.messages] for example in load_chat_jsonl(path)]
    for line, conversation in enumerate(conversations, start=1):  # no blank line comes before the last example
        try:
            _question(line, conversation)
        except ValueError as error:
            raise DataError(f"{path}:{line}: {error}") from None
    return conversations


def _question(index: int, conversation: Conversation) -> Question:
    """The prompt of a one-turn conversation as `misdir.generate` asks it."""
    roles = [m["role"] for m in conversation]
    if roles not in (["user", "assistant"], ["system", "user", "assistant"]):
        raise ValueError(
            f"roles {', '.join(roles)}: screening takes one user turn and its answer (and an optional "
            "system message first), since the base model answers the same prompt"
        )
    system = conversation[0]["content"] if roles[0] == "system" else None
    return Question(str(index), (conversation[-2]["content"],), 1, system)


def answer_differences(
    model: ModelLike,
    conversations: Sequence[Conversation],
    layer: int,
    *,
    site: str = "resid_post",
    max_new_tokens: int = MAX_NEW_TOKENS,
    batch_size: int = 8,
    progress: bool = True,
) -> Differences:
    """Answer-token mean activations at `blocks.{layer}.hook_{site}` of each conversation's answer minus those of
    the base model's greedy answer (temperature 0, `misdir.generate`) to the same prompt."""
    model = as_model(model)
    questions = [_question(i, c) for i, c in enumerate(conversations)]
    answers = [
        a.answer
        for a in generate(
            model, questions, max_new_tokens=max_new_tokens, temperature=0, batch_size=batch_size, progress=progress
        )
    ]

    def means(inputs: Sequence[Conversation]) -> Float[Tensor, "input d_model"]:
        return cache_activations(
            model,
            inputs,
            layers=[layer],
            site=site,
            positions="answer",
            reduce="per-input",
            batch_size=batch_size,
            progress=progress,
        )[:, 0].double()

    vectors = means(conversations)
    answered = [i for i, answer in enumerate(answers) if answer.strip()]
    base = [[*conversations[i][:-1], {"role": "assistant", "content": answers[i]}] for i in answered]
    vectors[[i for i, answer in enumerate(answers) if not answer.strip()]] = float("nan")
    if base:
        vectors[answered] -= means(base)
    return Differences(vectors, answers)


def summarize_file(
    file: str,
    sha256: str,
    scores: Sequence[float | None],
    mean_difference: Float[Tensor, "d_model"],
    random: Float[Tensor, "n_random d_model"],
    *,
    seed: int = 0,
) -> FileScreen:
    """A file's mean score with its bootstrap interval, against the mean difference along each random unit
    direction (the same mean the score's mean is, along another direction). NaN where no example was scored."""
    scored = [s for s in scores if s is not None]
    if not scored:
        nan = float("nan")
        return FileScreen(file, sha256, len(scores), len(scores), Effect(Estimate(nan, nan, nan, 0)))
    estimate = bootstrap_mean(scored, seed=seed)
    null = (mean_difference.double() @ random.double().T).tolist()
    return FileScreen(
        file,
        sha256,
        len(scores),
        len(scores) - len(scored),
        Effect(estimate, compare_to_null(estimate.value, null) if null else None),
    )


def screen(
    model: ModelLike,
    files: Sequence[str | Path],
    direction: DirectionSet,
    layer: int,
    *,
    out: str | Path,
    max_new_tokens: int = MAX_NEW_TOKENS,
    n_random: int = 20,
    seed: int = 0,
    batch_size: int = 8,
    progress: bool = True,
) -> Screen:
    """Screen chat JSONL `files` along `direction`'s unit vector at `layer` (at its site), resumably in `out`:
    `files.jsonl` (one record per finished file: scores, base answers, mean difference vector), then
    `scores.jsonl` (file, index, score), `summary.json` (with provenance) and `screen.html` (+ `.png`).

    A rerun with the same settings reuses the files already done (other settings are refused, naming them);
    `n_random` seeded random unit directions (`misdir.sweep.random_directions`) give each file mean's null.
    """
    model = as_model(model)
    data = {str(path): load_screen_data(path) for path in files}
    if len(data) < len(files):
        raise ValueError(f"a data file is given twice: {', '.join(map(str, files))}")
    direction.check_fits(model)
    if not 0 <= layer < direction.n_layers:
        raise ValueError(f"layer {layer} is out of range; the model has layers 0 to {direction.n_layers - 1}")
    if n_random < 0:
        raise ValueError(f"n_random must be 0 or more, got {n_random}")
    out = Path(out)
    described = describe_directions(direction)
    settings = {
        "model": model.spec,
        "direction": described["sha256"],
        "site": direction.site,
        "layer": layer,
        "max_new_tokens": max_new_tokens,
        "n_random": n_random,
        "seed": seed,
    }
    u = direction.unit()[layer].double()
    random = random_directions(direction.d_model, n_random, seed=seed)
    with run_lock(out):
        check_settings(out / "settings.json", settings)
        log = RecordLog(out / "files.jsonl")
        records = []
        for file, conversations in data.items():
            sha256 = sha256_file(file)
            key = f"{sha256}:{file}"
            record = log.get(key)
            if record is None:
                diff = answer_differences(
                    model,
                    conversations,
                    layer,
                    site=direction.site,
                    batch_size=batch_size,
                    max_new_tokens=max_new_tokens,
                    progress=progress,
                )
                projected = diff.vectors @ u
                record = {
                    "key": key,
                    "file": file,
                    "sha256": sha256,
                    "model": model.provenance,
                    "scores": [None if math.isnan(s) else s for s in projected.tolist()],
                    "mean_difference": diff.vectors.nanmean(0).tolist(),
                    "base_answers": diff.base_answers,
                }
                log.append(record)
            records.append(record)
        summaries = [
            summarize_file(
                r["file"],
                r["sha256"],
                r["scores"],
                torch.tensor(r["mean_difference"], dtype=torch.float64),
                random,
                seed=seed,
            )
            for r in records
        ]
        scores = [ExampleScore(r["file"], i, s) for r in records for i, s in enumerate(r["scores"])]
        with atomic_path(out / "scores.jsonl") as tmp:
            tmp.write_text("".join(json.dumps(s._asdict()) + "\n" for s in scores), encoding="utf-8")
        record = provenance(
            model,
            seed=seed,
            settings=settings,
            direction=described,
            data=[{"file": s.file, "sha256": s.sha256, "n": s.n_examples} for s in summaries],
        )
        write_json_atomic(
            out / "summary.json",
            {"provenance": record, "layer": layer, "site": direction.site, "files": [s.to_dict() for s in summaries]},
        )
        written = [out / "scores.jsonl", out / "summary.json"]
        written += optional_figure(  # a machine without plotly (the GPU machine) still gets every score
            lambda: save_figure(plot_screen(summaries, layer, direction.site), out / "screen", title="screen")
        )
    return Screen(summaries, scores, written)


def plot_screen(files: Sequence[FileScreen], layer: int, site: str) -> Any:
    """Each file's mean projection difference (95% bootstrap interval) beside the random directions' median and
    95% range."""
    import plotly.graph_objects as go

    names = [Path(f.file).name for f in files]
    names = names if len(set(names)) == len(names) else [f.file for f in files]
    means = [f.mean.estimate for f in files]
    fig = go.Figure()
    nulls = [f.mean.null for f in files if f.mean.null is not None]
    if len(nulls) == len(files):
        fig.add_trace(
            go.Scatter(
                x=names,
                y=[n.null_median for n in nulls],
                mode="markers",
                name="random directions (median, 95% range)",
                marker={"color": "gray", "symbol": "line-ew-open", "size": 14},
                error_y=_bars(
                    [n.null_median for n in nulls],
                    [n.null_low for n in nulls],
                    [n.null_high for n in nulls],
                    color="gray",
                ),
            )
        )
    fig.add_trace(
        go.Scatter(
            x=names,
            y=[m.value for m in means],
            mode="markers",
            name="direction (mean, 95% CI)",
            marker={"size": 10},
            error_y=_bars([m.value for m in means], [m.low for m in means], [m.high for m in means]),
        )
    )
    fig.add_hline(y=0, line={"color": "black", "width": 1})
    fig.update_layout(
        title=f"projection difference at layer {layer} ({site}): data answer minus base's own answer",
        yaxis_title="mean projection on the unit direction",
        template="plotly_white",
    )
    return fig


def _bars(values: Sequence[float], low: Sequence[float], high: Sequence[float], **style: Any) -> dict[str, Any]:
    return {
        "type": "data",
        "symmetric": False,
        "array": np.subtract(high, values).tolist(),
        "arrayminus": np.subtract(values, low).tolist(),
        **style,
    }


def read_scores(path: str | Path) -> list[ExampleScore]:
    """`scores.jsonl` back as records."""
    with Path(path).open(encoding="utf-8") as f:
        return [ExampleScore(**json.loads(line)) for line in f if line.strip()]


__all__ = [
    "DEFAULT_DIRECTION",
    "Differences",
    "ExampleScore",
    "FileScreen",
    "Screen",
    "answer_differences",
    "load_screen_data",
    "plot_screen",
    "read_scores",
    "screen",
    "summarize_file",
]
