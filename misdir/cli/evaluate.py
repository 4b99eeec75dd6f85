"""`misdir evaluate`: how misaligned a model is (contrast metric or judged answers), resumably."""

from __future__ import annotations

from pathlib import Path

import typer

from misdir.cli.common import LIMIT_HELP, _at_least, _fail, _limit, _model_shape, _refused
from misdir.stats import format_estimate


def evaluate(
    model: str = typer.Option("embedded", help="model spec"),
    questions: str = typer.Option("general", help="contrast-pair set or JSONL (contrast); question set or YAML (judge)"),
    judge: str = typer.Option("contrast", help="contrast, openai:MODEL, local:MODEL_SPEC, or none (sample only)"),
    judge_url: str = typer.Option(None, help="openai judge: base URL of an OpenAI-compatible server (ends in /v1)"),
    samples: int = typer.Option(None, help="judge: answers per paraphrase (default: the question file's)"),
    max_new_tokens: int = typer.Option(256, help="judge: longest answer in tokens"),
    temperature: float = typer.Option(1.0, help="judge: sampling temperature (0: greedy)"),
    seed: int = typer.Option(0, help="judge: sampling seed"),
    limit: int = typer.Option(None, help=LIMIT_HELP),
    trigger: str = typer.Option(None, help="contrast: backdoor trigger put in every question"),
    batch_size: int = typer.Option(16, help="items or answers per forward pass"),
    out: Path = typer.Option(..., help="run directory: scores.jsonl, answers.jsonl, summary.json"),
) -> None:
    """How misaligned MODEL is, resumably: run it again after a crash and it continues where it stopped."""
    from misdir.evaluate import evaluate as run
    from misdir.questions import load_contrast_pairs, load_questions

    limit = _limit(limit)
    _at_least("--samples", samples, 1)
    _at_least("--max-new-tokens", max_new_tokens, 1)
    _at_least("--temperature", temperature, 0)
    _at_least("--batch-size", batch_size, 1)
    kind, _, name = judge.partition(":")
    if judge not in ("contrast", "none") and not (kind in ("openai", "local") and name):
        _fail(f"--judge {judge!r}: expected contrast, openai:MODEL, local:MODEL_SPEC or none", usage=True)
    with _refused():
        (load_contrast_pairs if judge == "contrast" else load_questions)(questions)
    _model_shape({"--model": model, **({"--judge": name} if kind == "local" else {})})

    summary = run(model, questions, out=out, judge=judge, n_samples=samples, max_new_tokens=max_new_tokens,
                  temperature=temperature, seed=seed, limit=limit, trigger=trigger, batch_size=batch_size,
                  judge_url=judge_url)
    if summary["metric"] == "contrast":
        r = summary["result"]
        typer.echo(f"{model}: margin {format_estimate(r['margin'])}, prefers misaligned {format_estimate(r['prefers_misaligned'], '.0%')}, "
                   f"fluency {r['fluency']['value']:+.2f} ({summary['n_items']} items)")
    elif summary["metric"] == "answers":
        typer.echo(f"{model}: {summary['n_answers']} answers in {out / 'answers.jsonl'}")
    else:
        s = summary["summary"]
        typer.echo(f"{model}: EM rate {format_estimate(s['em_rate'], '.1%')}, coherence rate "
                   f"{format_estimate(s['coherence_rate'], '.1%')} ({s['n_scored']}/{s['n_answers']} answers scored, "
                   f"{len(summary['failures'])} judge failures to retry)")
    typer.echo(f"wrote {out / 'summary.json'}")
