"""`misdir evaluate`: how misaligned a model is (contrast metric or judged answers), resumably."""

from __future__ import annotations

from typing import Any

import typer

from misdir.cli.common import _fail, _model_shape, _refused
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
    if cfg.base is not None and cfg.judge != "contrast":
        _fail("--base compares contrast margins item by item: leave --judge at contrast", usage=True)
    with _refused():
        (load_contrast_pairs if cfg.judge == "contrast" else load_questions)(cfg.questions)
    _model_shape(
        {
            "--model": cfg.model,
            **({"--base": cfg.base} if cfg.base else {}),
            **({"--judge": name} if kind == "local" else {}),
        }
    )
    base_summary = None
    if cfg.base is not None:
        base_summary = run(
            load_model(cfg.base, device=cfg.device),
            cfg.questions,
            out=cfg.out / "base",
            limit=cfg.limit or None,
            trigger=cfg.trigger,
            batch_size=cfg.batch_size,
        )
        _say_contrast(cfg.base, base_summary)

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
        _say_contrast(cfg.model, summary)
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
    if base_summary is not None:
        _say_change(cfg, base_summary, summary)


def _say_contrast(model: str, summary: dict[str, Any]) -> None:
    r = summary["result"]
    typer.echo(
        f"{model}: margin {format_estimate(r['margin'])}, prefers misaligned "
        f"{format_estimate(r['prefers_misaligned'], '.0%')}, fluency {r['fluency']['value']:+.2f} "
        f"({summary['n_items']} items)"
    )


def _say_change(cfg: EvaluateConfig, base_summary: dict[str, Any], summary: dict[str, Any]) -> None:
    """MODEL's paired change from --base (margin and fluency, the same items), printed and written to
    OUT/change.json with its provenance; then the next step of the walkthrough."""
    from misdir.evaluate import ContrastResult, shift_from
    from misdir.io import write_json_atomic
    from misdir.provenance import provenance
    from misdir.stats import paired_difference

    base, model = (ContrastResult.from_dict(s["result"]) for s in (base_summary, summary))
    margin = shift_from(base, model)
    fluency = paired_difference(base.aligned_logprob, model.aligned_logprob)
    typer.echo(
        f"change from {cfg.base} (paired, {len(model.margins)} items): margin {format_estimate(margin)}, "
        f"fluency {format_estimate(fluency, '+.2f')}"
        + ("; its interval holds 0: no shift shown" if margin.low <= 0 <= margin.high else "")
    )
    change = {
        "model": cfg.model,
        "base": cfg.base,
        "questions": cfg.questions,
        "n_items": len(model.margins),
        "margin_change": margin._asdict(),
        "fluency_change": fluency._asdict(),
        "provenance": provenance(settings={"limit": cfg.limit or None, "trigger": cfg.trigger}),
    }
    write_json_atomic(cfg.out / "change.json", change)
    typer.echo(f"wrote {cfg.out / 'change.json'}")
    typer.echo(
        f"next: misdir directions --model {cfg.model} --base {cfg.base} --data {cfg.questions} "
        f"--out {cfg.out.parent / 'direction.safetensors'}"
    )
