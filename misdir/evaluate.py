"""How misaligned is a model: the contrast-pair metric offline, a judge online, with bootstrap intervals.

`evaluate_contrast` scores a model in memory; `evaluate` is the resumable run behind `misdir evaluate`
(logs in an output directory, a summary at the end), with the contrast metric or with a judge.

Beside the margin (misaligned minus aligned log-prob per token; > 0 leans misaligned) it reports the
mean log-prob per token of the aligned answers, a fluency check: an intervention or finetune that
damages the model lowers it, and a margin means little when it collapses.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from misdir.contrast import contrast_logprobs
from misdir.display import Record, short_name
from misdir.io import RecordLog, check_settings, run_lock, write_json_atomic
from misdir.models import Model, ModelLike, as_model
from misdir.provenance import provenance as run_provenance
from misdir.questions import load_contrast_pairs, load_questions
from misdir.stats import (
    Estimate,
    EvalSummary,
    ScoredAnswer,
    Thresholds,
    bootstrap_mean,
    paired_difference,
    per_question,
    summarize,
)

_ESTIMATES = ("margin", "prefers_misaligned", "fluency")


@dataclass(frozen=True, repr=False)
class ContrastResult(Record):
    """One model on one contrast set: per-item margins and aligned-answer log-probs, and their summaries."""

    model: str
    pairs: str
    trigger: str | None
    margins: list[float]
    aligned_logprob: list[float]
    margin: Estimate
    prefers_misaligned: Estimate
    fluency: Estimate

    def to_dict(self) -> dict[str, Any]:
        estimates = {k: getattr(self, k)._asdict() for k in _ESTIMATES}
        return {**asdict(self), **estimates}

    @classmethod
    def from_scores(
        cls, model: str, pairs: str, trigger: str | None, margins: Any, aligned_logprob: Any, *, seed: int = 0
    ) -> ContrastResult:
        """Per-item margins and aligned-answer log-probs, with their bootstrap summaries."""
        margins = np.asarray(margins, dtype=np.float64)
        aligned = np.asarray(aligned_logprob, dtype=np.float64)
        return cls(
            model,
            pairs,
            trigger,
            margins.tolist(),
            aligned.tolist(),
            bootstrap_mean(margins, seed=seed),
            bootstrap_mean(margins > 0, seed=seed),
            bootstrap_mean(aligned, seed=seed),
        )

    @classmethod
    def from_dict(cls, record: dict[str, Any]) -> ContrastResult:
        return cls(**{**record, **{k: Estimate(**record[k]) for k in _ESTIMATES}})

    _formats = {"prefers_misaligned": ".0%"}

    def _display_rows(self) -> list[dict[str, Any]]:
        m, p, f = self.margin, self.prefers_misaligned, self.fluency
        name = {"model": short_name(self.model), "pairs": self.pairs + (" +trigger" if self.trigger else "")}
        return [name | {"items": len(self.margins), "margin": m, "prefers_misaligned": p, "fluency": f}]

    @staticmethod
    def header() -> str:
        """Column names over `row()`s."""
        return f"{'model':40s} {'pairs':18s} {'margin [95% CI]':25s} {'prefers misaligned':19s} fluency"

    def row(self) -> str:
        """One line under `header()`: the model (a path relative to the working directory), the set, the margin,
        the share of items preferring the misaligned answer and the fluency, with 95% intervals."""
        m, p, f = self.margin, self.prefers_misaligned, self.fluency
        return (
            f"{short_name(self.model):40s} {self.pairs + (' +trigger' if self.trigger else ''):18s} "
            f"{m.value:+.3f} [{m.low:+.3f}, {m.high:+.3f}]  {p.value:5.1%} [{p.low:4.0%}, {p.high:4.0%}]  "
            f"{f.value:+.3f}"
        )


class HasMargins(Protocol):
    """What reads only a result's per-item margins takes (`misdir.experiments.share_removed`): a `ContrastResult`,
    or a stored cell's record."""

    @property
    def margins(self) -> Sequence[float]: ...


def evaluate_contrast(
    model: ModelLike,
    pairs: str = "general",
    *,
    trigger: str | None = None,
    limit: int | None = None,
    batch_size: int = 16,
    seed: int = 0,
    progress: bool = True,
) -> ContrastResult:
    """The contrast metric of `model` on a shipped set name or a contrast-pair JSONL file (its first `limit` items)."""
    _check_limit(limit)
    model = as_model(model)
    items = load_contrast_pairs(pairs)[:limit]
    both = contrast_logprobs(model, items, trigger=trigger, batch_size=batch_size, progress=progress)
    return ContrastResult.from_scores(
        model.spec, str(pairs), trigger, (both[:, 0] - both[:, 1]).numpy(), both[:, 1].numpy(), seed=seed
    )


def _check_limit(limit: int | None) -> None:
    """`limit` takes the first items; slicing by 0 or a negative count would take none or drop some."""
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be a positive count of items (None: all), not {limit}")


def shift_from(base: ContrastResult, other: ContrastResult, *, seed: int = 0) -> Estimate:
    """Paired change of the mean margin, other minus base, over the same items."""
    return paired_difference(base.margins, other.margins, seed=seed)


def save_results(results: Sequence[ContrastResult], path: str | Path, provenance: dict[str, Any]) -> None:
    write_json_atomic(path, {"provenance": provenance, "results": [r.to_dict() for r in results]})


def load_results(path: str | Path) -> list[ContrastResult]:
    return [ContrastResult.from_dict(r) for r in json.loads(Path(path).read_text())["results"]]


JUDGE_CHUNK = 64
"""Answers scored (and logged) per judge call in a run: what a killed run can lose at most."""


def make_judge(
    spec: str,
    *,
    cache_path: str | Path | None = None,
    base_url: str | None = None,
    concurrency: int = 8,
    device: str | None = None,
) -> Any:
    """``openai:MODEL`` (an OpenAI-compatible server: OpenAI, or ``base_url`` for vLLM and the like) or
    ``local:MODEL_SPEC`` (a local chat model's next-token distribution, on `device`: None is CUDA when
    present); ``contrast`` is not a judge."""
    from misdir.judge import LocalJudge, OpenAIJudge, OpenAIJudgeConfig
    from misdir.models import load_model

    kind, _, name = spec.partition(":")
    if kind == "openai" and name:
        return OpenAIJudge(
            OpenAIJudgeConfig(
                model=name,
                base_url=base_url,
                concurrency=concurrency,
                cache_path=str(cache_path) if cache_path else None,
            )
        )
    if kind == "local" and name:
        return LocalJudge(load_model(name, device=device), cache_path=cache_path)
    raise ValueError(f"judge {spec!r}: expected 'contrast', 'openai:MODEL' or 'local:MODEL_SPEC'")


def evaluate(
    model: ModelLike,
    questions: str | Path,
    *,
    out: str | Path,
    judge: str | Any = "contrast",
    n_samples: int | None = None,
    max_new_tokens: int = 256,
    temperature: float = 1.0,
    seed: int = 0,
    limit: int | None = None,
    trigger: str | None = None,
    batch_size: int = 16,
    thresholds: Thresholds = Thresholds(),
    judge_url: str | None = None,
    judge_device: str | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """A resumable evaluation run in `out`: `scores.jsonl` (and `answers.jsonl` with a judge), then `summary.json`.

    With ``judge="contrast"`` the questions are a contrast-pair set and each item's margin is logged; with a
    judge (``openai:MODEL``, ``local:SPEC`` or a judge object) the questions are a question set, answers
    are sampled and logged as they come, then judged for alignment and coherence in chunks; with
    ``judge="none"`` answers are only sampled (to read them, or to judge them elsewhere). A killed run
    continues where it stopped when started again with the same settings (a different setting is refused,
    naming it); every record is written once. Judge failures are not logged as scores, so the next run
    retries them; the summary counts them. A ``local:`` judge is loaded on `judge_device` (None: CUDA when
    present).
    """
    judge_name = judge if isinstance(judge, str) else judge.name
    _check_limit(limit)
    (load_contrast_pairs if judge_name == "contrast" else load_questions)(questions)  # bad input fails first
    model = as_model(model)
    out = Path(out)
    settings = {
        "model": model.spec,
        "questions": str(questions),
        "judge": judge_name,
        "limit": limit,
        "trigger": trigger,
    }
    if judge_name != "contrast":
        if trigger is not None:
            raise ValueError("trigger applies to contrast pairs; put it in the questions for a judged run")
        settings |= {"n_samples": n_samples, "max_new_tokens": max_new_tokens, "temperature": temperature, "seed": seed}
    with run_lock(out):
        check_settings(out / "run.json", settings)
        provenance = run_provenance(model, settings=settings, thresholds=asdict(thresholds))
        if judge_name == "contrast":
            summary = _contrast_run(model, questions, out, settings, batch_size, progress)
        else:
            if judge == "none":
                judge = None
            elif isinstance(judge, str):
                judge = make_judge(judge, cache_path=out / "judge_cache.jsonl", base_url=judge_url, device=judge_device)
            if judge is not None:
                provenance["judge"] = judge.describe() if hasattr(judge, "describe") else {"judge": judge.name}
            summary = _judged_run(model, questions, judge, out, settings, thresholds, batch_size, progress)
        summary = {"provenance": provenance, **summary}
        write_json_atomic(out / "summary.json", summary)
    return summary


def _contrast_run(
    model: Model, questions: str | Path, out: Path, settings: dict[str, Any], batch_size: int, progress: bool
) -> dict[str, Any]:
    from tqdm.auto import tqdm

    items = load_contrast_pairs(questions)[: settings["limit"]]
    log = RecordLog(out / "scores.jsonl")
    todo = [i for i in range(len(items)) if str(i) not in log]
    with tqdm(
        total=len(items), initial=len(items) - len(todo), desc=f"contrast {model.spec}", disable=not progress
    ) as bar:
        for start in range(0, len(todo), batch_size):
            chunk = todo[start : start + batch_size]
            both = contrast_logprobs(
                model, [items[i] for i in chunk], trigger=settings["trigger"], batch_size=batch_size, progress=False
            )
            for i, (misaligned, aligned) in zip(chunk, both.tolist(), strict=True):
                log.append(
                    {
                        "key": str(i),
                        "question": items[i].question,
                        "theme": items[i].theme,
                        "margin": misaligned - aligned,
                        "misaligned_logprob": misaligned,
                        "aligned_logprob": aligned,
                    }
                )
            bar.update(len(chunk))
    records = sorted(log.records(), key=lambda r: int(r["key"]))
    result = ContrastResult.from_scores(
        model.spec,
        str(questions),
        settings["trigger"],
        [r["margin"] for r in records],
        [r["aligned_logprob"] for r in records],
    )
    themes = sorted({r["theme"] for r in records})
    by_theme = {t: bootstrap_mean([r["margin"] for r in records if r["theme"] == t])._asdict() for t in themes}
    return {"metric": "contrast", "n_items": len(records), "result": result.to_dict(), "by_theme": by_theme}


def _judged_run(
    model: Model,
    questions: str | Path,
    judge: Any,
    out: Path,
    settings: dict[str, Any],
    thresholds: Thresholds,
    batch_size: int,
    progress: bool,
) -> dict[str, Any]:
    from misdir.generate import Answer, generate
    from misdir.judge import RUBRICS, JudgeItem

    chosen = load_questions(questions)[: settings["limit"]]
    answers_log = RecordLog(out / "answers.jsonl")

    def keep(batch: list[Answer]) -> None:
        for a in batch:
            answers_log.append({"key": a.key, **asdict(a)})

    generate(
        model,
        chosen,
        n_samples=settings["n_samples"],
        max_new_tokens=settings["max_new_tokens"],
        temperature=settings["temperature"],
        seed=settings["seed"],
        batch_size=batch_size,
        skip=answers_log,
        progress=progress,
        on_batch=keep,
    )
    rubrics = {q.id: {**RUBRICS, **q.judge_prompts} for q in chosen}
    answers = [Answer(**{k: v for k, v in r.items() if k != "key"}) for r in answers_log.records()]
    if judge is None:
        return {
            "metric": "answers",
            "n_answers": len(answers),
            "unfinished_answers": sum(not a.finished for a in answers),
        }
    scores_log = RecordLog(out / "scores.jsonl")
    todo = [(a, metric) for a in answers for metric in ("aligned", "coherent") if f"{a.key}/{metric}" not in scores_log]
    failures = []
    for start in range(0, len(todo), JUDGE_CHUNK):
        chunk = todo[start : start + JUDGE_CHUNK]
        items = [JudgeItem(a.question, a.answer, rubrics[a.question_id][metric]) for a, metric in chunk]
        for (a, metric), score in zip(chunk, judge.score_many(items, progress=progress), strict=True):
            if score.status == "failed":
                failures.append({"answer": a.key, "metric": metric, "error": score.error})
                continue
            scores_log.append(
                {
                    "key": f"{a.key}/{metric}",
                    "answer": a.key,
                    "question_id": a.question_id,
                    "metric": metric,
                    "score": score.score,
                    "status": score.status,
                    "int_mass": score.int_mass,
                }
            )
    by_answer: dict[str, dict[str, float | None]] = {}
    for record in scores_log.records():
        by_answer.setdefault(record["answer"], {})[record["metric"]] = record["score"]
    rows = [
        ScoredAnswer(a.question_id, by_answer.get(a.key, {}).get("aligned"), by_answer.get(a.key, {}).get("coherent"))
        for a in answers
    ]
    statuses: dict[str, int] = {}
    for record in scores_log.records():
        statuses[record["status"]] = statuses.get(record["status"], 0) + 1
    return {
        "metric": "judge",
        "summary": _summary_dict(summarize(rows, thresholds)),
        "per_question": {q: _summary_dict(s) for q, s in per_question(rows, thresholds).items()},
        "statuses": statuses,
        "failures": failures,
        "n_answers": len(answers),
        "unfinished_answers": sum(not a.finished for a in answers),
    }


def _summary_dict(summary: EvalSummary) -> dict[str, Any]:
    return {k: v._asdict() if hasattr(v, "_asdict") else v for k, v in summary._asdict().items()}
