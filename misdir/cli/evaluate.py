"""`misdir evaluate`: how misaligned a model is (contrast metric or judged answers), resumably."""

from __future__ import annotations

import typer

from misdir.cli.common import _model_shape, _refused
from misdir.cli.options import command
from misdir.configs import EvaluateConfig
from misdir.stats import format_estimate


@command(EvaluateConfig)
def evaluate(cfg: EvaluateConfig) -> None:
    """How misaligned MODEL is, resumably: run it again after a crash and it continues where it stopped."""
    from misdir.evaluate import evaluate as run
    from misdir.models import load_model
    from misdir.questions import load_contrast_pairs, load_questions

    kind, _, name = cfg.judge.partition(":")
    with _refused():
        (load_contrast_pairs if cfg.judge == "contrast" else load_questions)(cfg.questions)
    _model_shape({"--model": cfg.model, **({"--judge": name} if kind == "local" else {})})

    summary = run(
        load_model(cfg.model, device=cfg.device),
        cfg.questions,
        out=cfg.out,
        judge=cfg.judge,
        n_samples=cfg.samples,
        max_new_tokens=cfg.max_new_tokens,
        temperature=cfg.temperature,
        seed=cfg.seed,
        limit=cfg.limit or None,
        trigger=cfg.trigger,
        batch_size=cfg.batch_size,
        judge_url=cfg.judge_url,
        judge_device=cfg.device,
    )
    if summary["metric"] == "contrast":
        r = summary["result"]
        typer.echo(
            f"{cfg.model}: margin {format_estimate(r['margin'])}, prefers misaligned "
            f"{format_estimate(r['prefers_misaligned'], '.0%')}, fluency {r['fluency']['value']:+.2f} "
            f"({summary['n_items']} items)"
        )
    elif summary["metric"] == "answers":
        typer.echo(f"{cfg.model}: {summary['n_answers']} answers in {cfg.out / 'answers.jsonl'}")
    else:
        s = summary["summary"]
        typer.echo(
            f"{cfg.model}: EM rate {format_estimate(s['em_rate'], '.1%')}, coherence rate "
            f"{format_estimate(s['coherence_rate'], '.1%')} ({s['n_scored']}/{s['n_answers']} answers "
            f"scored, {len(summary['failures'])} judge failures to retry)"
        )
    typer.echo(f"wrote {cfg.out / 'summary.json'}")
