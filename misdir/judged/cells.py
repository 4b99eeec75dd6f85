"""Judged cells: what a cell samples (`JudgedMetric`), the scorer the sweep engine runs in each cell (sample with
the edit open, then judge), the plan of what a run still has to do, and the judge's set-up and reachability."""

from __future__ import annotations

import socket
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from misdir.display import Record
from misdir.evaluate import JUDGE_CHUNK, make_judge
from misdir.generate import Answer, generate
from misdir.io import RecordLog
from misdir.judge import RUBRICS, JudgeCache, JudgeItem
from misdir.models import Model
from misdir.questions import Question, load_questions
from misdir.stats import Estimate, ScoredAnswer, Thresholds, summarize
from misdir.sweep import Cell, score_cells

METRICS = ("aligned", "coherent")
"""What the judge scores each answer for (a question's own rubrics win over `misdir.judge.RUBRICS`)."""


@dataclass(frozen=True)
class JudgedMetric:
    """What a judged cell samples and how its answers count: the question set, the sampling, the thresholds."""

    questions: str = "general"
    """A shipped question set's name or a YAML file in the EM repositories' layout."""
    n_samples: int | None = None
    """Answers per paraphrase (None: each question's own `samples_per_paraphrase`)."""
    max_new_tokens: int = 256
    temperature: float = 1.0
    seed: int = 0
    limit: int | None = None
    """The first `limit` questions only."""
    thresholds: Thresholds = field(default_factory=Thresholds)

    def __post_init__(self) -> None:
        if self.n_samples is not None and self.n_samples < 1:
            raise ValueError(f"n_samples must be at least 1, got {self.n_samples}")
        if not self.temperature >= 0 or self.max_new_tokens < 1 or (self.limit is not None and self.limit < 1):
            raise ValueError(
                f"temperature must be >= 0, max_new_tokens and limit >= 1 (got {self.temperature}, "
                f"{self.max_new_tokens}, {self.limit})"
            )

    def load(self) -> list[Question]:
        """The questions a cell samples for (a file that does not parse is refused, naming file and line)."""
        return load_questions(self.questions)[: self.limit]

    def identity(self) -> dict[str, Any]:
        """The settings that make two runs' answers comparable (a resumed sweep must match them)."""
        return {k: v for k, v in asdict(self).items() if k != "thresholds"}

    def n_answers(self) -> int:
        """Answers one cell samples."""
        return sum(len(q.paraphrases) * (self.n_samples or q.samples_per_paraphrase) for q in self.load())


@dataclass(frozen=True, repr=False)
class JudgedResult(Record):
    """One judged cell: EM rate, coherent share and mean alignment with intervals, and the judge's verdicts."""

    em_rate: Estimate
    coherence_rate: Estimate
    mean_aligned: Estimate
    n_answers: int
    n_scored: int
    verdicts: dict[str, int]
    """Alignment verdicts by kind: score, code, refusal, unscored."""


def scored_answers(record: Mapping[str, Any]) -> list[ScoredAnswer]:
    """A judged cell's answers as `misdir.stats` reads them (a score is None where the judge gave none)."""
    return [ScoredAnswer(a["question_id"], a["aligned"], a["coherent"]) for a in record["answers"]]


def judged_result(record: Mapping[str, Any], thresholds: Thresholds = Thresholds(), seed: int = 0) -> JudgedResult:
    summary = summarize(scored_answers(record), thresholds, unit="question", seed=seed)
    verdicts: dict[str, int] = {}
    for a in record["answers"]:
        verdicts[a["aligned_status"]] = verdicts.get(a["aligned_status"], 0) + 1
    return JudgedResult(
        summary.em_rate, summary.coherence_rate, summary.mean_aligned, summary.n_answers, summary.n_scored, verdicts
    )


class JudgedScorer:
    """The sweep engine's judged metric (`misdir.sweep.Scorer`): sample a cell's answers, then judge them."""

    def __init__(
        self, judge: Any, metric: JudgedMetric, out: str | Path, *, batch_size: int = 16, progress: bool = True
    ):
        self.judge, self.metric, self.batch_size, self.progress = judge, metric, batch_size, progress
        self.questions = metric.load()
        self.rubrics = {q.id: {**RUBRICS, **q.judge_prompts} for q in self.questions}
        self.answers = RecordLog(Path(out) / "answers.jsonl")
        self.failures: dict[str, list[str]] = {}
        """Per cell left unrecorded: the judge's errors (the cell is retried by the next run)."""

    def sampled(self, cell: Cell) -> list[Answer]:
        """The answers of `cell` already written, in the order they were."""
        fields = Answer.__dataclass_fields__
        return [
            Answer(**{k: v for k, v in r.items() if k in fields})
            for r in self.answers.records()
            if r["cell"] == cell.key
        ]

    def __call__(self, model: Model, cell: Cell) -> dict[str, Any] | None:
        m = self.metric
        done = {a.key for a in self.sampled(cell)}

        def keep(batch: list[Answer]) -> None:
            for a in batch:
                self.answers.append({"key": f"{cell.key} || {a.key}", "cell": cell.key, **asdict(a)})

        generate(
            model,
            self.questions,
            n_samples=m.n_samples,
            max_new_tokens=m.max_new_tokens,
            temperature=m.temperature,
            seed=m.seed,
            batch_size=self.batch_size,
            skip=done,
            progress=False,
            on_batch=keep,
        )
        answers = self.sampled(cell)
        pending = [(a, metric) for a in answers for metric in METRICS]
        verdicts: dict[tuple[str, str], Any] = {}
        for start in range(0, len(pending), JUDGE_CHUNK):
            chunk = pending[start : start + JUDGE_CHUNK]
            items = [JudgeItem(a.question, a.answer, self.rubrics[a.question_id][metric]) for a, metric in chunk]
            for (a, metric), score in zip(chunk, self.judge.score_many(items, progress=False), strict=True):
                verdicts[a.key, metric] = score
        failed = [f"{key[0]}/{key[1]}: {s.error}" for key, s in verdicts.items() if s.status == "failed"]
        if failed:
            self.failures[cell.key] = failed
            return None
        return {
            "answers": [
                {
                    "key": a.key,
                    "question_id": a.question_id,
                    "finished": a.finished,
                    **{metric: verdicts[a.key, metric].score for metric in METRICS},
                    **{f"{metric}_status": verdicts[a.key, metric].status for metric in METRICS},
                }
                for a in answers
            ]
        }


@dataclass(frozen=True)
class JudgedPlan:
    """What a judged sweep still has to do, counted before anything is sampled (`--dry-run` prints it)."""

    cells: int
    cells_done: int
    answers: int
    """Answers all the cells sample."""
    answers_sampled: int
    """Of those, already written to answers.jsonl."""
    judge_calls: int
    """Judge calls all the answers need (two each: alignment, coherence)."""
    judge_calls_cached: int
    """Of those, already in the judge's cache (for the answers sampled so far)."""

    def describe(self) -> str:
        to_sample, to_judge = self.answers - self.answers_sampled, self.judge_calls - self.judge_calls_cached
        return (
            f"{self.cells} cells ({self.cells_done} done): {to_sample:,} answers to sample (of {self.answers:,}), "
            f"at most {to_judge:,} judge calls to make (of {self.judge_calls:,}; {self.judge_calls_cached:,} "
            "in the cache)"
        )


def plan(cells: Sequence[Cell], metric: JudgedMetric, judge: Any, out: str | Path) -> JudgedPlan:
    """Count the answers and judge calls `cells` need, and how many are already written or cached."""
    out = Path(out)
    unique = list(dict.fromkeys(cells))
    done = {r["key"] for r in RecordLog(out / "cells.jsonl").records()} if (out / "cells.jsonl").exists() else set()
    scorer = JudgedScorer(judge, metric, out, progress=False)
    sampled = [a for c in unique for a in scorer.sampled(c)]
    cache = getattr(judge, "cache", None)
    cached = 0
    if cache is not None:
        for a in sampled:
            rubrics = scorer.rubrics[a.question_id]
            cached += sum(
                cache.get(JudgeCache.key(judge.name, JudgeItem(a.question, a.answer, rubrics[metric]))) is not None
                for metric in METRICS
            )
    per_cell = metric.n_answers()
    return JudgedPlan(
        len(unique),
        sum(c.key in done for c in unique),
        per_cell * len(unique),
        len(sampled),
        2 * per_cell * len(unique),
        cached,
    )


def announce_plans(plans: Mapping[str, JudgedPlan], judge: Any, *, dry_run: bool = False) -> None:
    """Print the plans of a study's judged sweeps (by folder) before any of them samples; unless `dry_run`, refuse
    an unreachable judge then, when any call is left to make, not after the stages before the sweeps."""
    for folder, todo in plans.items():
        print(f"judged sweep in {folder}: {todo.describe()}", flush=True)
    if not dry_run and any(todo.judge_calls_cached < todo.judge_calls for todo in plans.values()):
        check_reachable(judge)


def check_reachable(judge: Any, timeout: float = 5.0) -> None:
    """Refuse, in one line, an OpenAI-compatible judge whose server cannot be reached (a TCP connection to its
    host and port: no request is sent, nothing is paid)."""
    config = getattr(judge, "config", None)
    if config is None or not hasattr(config, "base_url"):
        return
    url = urlsplit(config.base_url or "https://api.openai.com/v1")
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        socket.create_connection((url.hostname or "", port), timeout=timeout).close()
    except OSError as error:
        raise ConnectionError(
            f"judge {judge.name}: cannot reach {url.scheme}://{url.hostname}:{port} "
            f"({error.strerror or error}); check --judge-url"
        ) from None


def as_judge(judge: Any, out: str | Path, *, judge_url: str | None = None, device: str | None = None) -> Any:
    """A judge spec (``openai:MODEL``, ``local:SPEC``) made into a judge caching in `out/judge_cache.jsonl`;
    a judge object is kept as it is."""
    if not isinstance(judge, str):
        return judge
    return make_judge(judge, cache_path=Path(out) / "judge_cache.jsonl", base_url=judge_url, device=device)


class JudgeFailures(RuntimeError):
    """Cells left unrecorded because the judge failed on some of their answers; a rerun retries only those."""


def _run(
    cells: Sequence[Cell],
    *,
    judge: Any,
    metric: JudgedMetric,
    out: Path,
    settings: dict[str, Any],
    loaders: Mapping[str, Callable[[], Model]],
    directions: Mapping[str, Any],
    batch_size: int,
    progress: bool,
    desc: str,
) -> dict[str, dict[str, Any]]:
    """Score the judged cells under the folder's lock; refuse to summarise an incomplete sweep."""
    scorer = JudgedScorer(judge, metric, out, batch_size=batch_size, progress=progress)
    records = score_cells(
        cells,
        models=loaders,
        directions=directions,
        out=out,
        settings=settings,
        batch_size=batch_size,
        progress=progress,
        desc=desc,
        score=scorer,
    )
    if scorer.failures:
        errors = [e for failed in scorer.failures.values() for e in failed]
        raise JudgeFailures(
            f"the judge failed on {len(errors)} answers of {len(scorer.failures)} cells (first: "
            f"{errors[0]}); run the sweep again to retry them (sampled answers and judged "
            "scores are kept)"
        )
    return records
