"""The demo's table (`out/summary.md`): how to read a null, the positive control, each model's contrast metric,
the cosines, then the ablation and steering effects beside their random null, in the metric the causal stages ran
on: the contrast margin, or with `--judge` the judged EM rate and coherent share of sampled answers."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from misdir.experiments import AblationSweep, SteeringGrid
from misdir.judged import JudgedSweep
from misdir.stats import format_estimate, paired_difference
from misdir.sweep import AgainstNull, is_random

READING = (
    "How to read it: each edit stands beside the same edit along random directions, and an effect inside their 95% "
    "range is a null (the direction does no more than any direction would); the positive control shows that where "
    "one direction is known to carry the shift, misdir finds it, removes the shift by ablating it and induces it by "
    "steering, each outside that range."
)

Column = tuple[str, Callable[[Any], str]]
"""A column of a sweep's table: its title, and its cell in a row (an `AblationRow`, `JudgedSteeringRow`, ...)."""


def _share(r: Any) -> str:
    return format_estimate(r.share_removed.estimate, "+.2f") if r.excess.low > 0 else "(no excess over base)"


def _rate(now: Any, before: Any) -> str:
    return f"{format_estimate(now, '.1%')} (from {before.value:.1%})"


ABLATED: list[Column] = [("ablated in", lambda r: r.model), ("direction", lambda r: r.direction)]
STEERED: list[Column] = [
    ("steering the base along", lambda r: r.direction),
    ("layer", lambda r: str(r.layer)),
    ("scale (of the residual norm)", lambda r: f"{r.scale:g}"),
]
CONTRAST_ABLATION: list[Column] = [
    ("share of excess removed", _share),
    ("random", lambda r: _null(r.share_removed.null)),
    ("margin change", lambda r: format_estimate(r.change.estimate, "+.2f")),
    ("random", lambda r: _null(r.change.null)),
    ("fluency after", lambda r: f"{r.fluency.value:+.2f} (from {r.unablated_fluency.value:+.2f})"),
]
CONTRAST_STEERING: list[Column] = [
    ("margin shift", lambda r: format_estimate(r.shift.estimate, "+.2f")),
    ("random", lambda r: _null(r.shift.null)),
    ("fluency change", lambda r: f"{r.fluency_change.estimate.value:+.2f}"),
]
JUDGED_ABLATION: list[Column] = [
    ("judged EM rate after", lambda r: _rate(r.em_rate, r.unablated_em_rate)),
    ("share of excess EM removed", _share),
    ("random", lambda r: _null(r.share_removed.null)),
    ("EM rate change", lambda r: format_estimate(r.change.estimate, "+.3f")),
    ("random", lambda r: _null(r.change.null, "+.3f")),
    ("coherent share after", lambda r: _rate(r.coherence_rate, r.unablated_coherence_rate)),
]
JUDGED_STEERING: list[Column] = [
    ("judged EM rate", lambda r: format_estimate(r.em_rate, ".1%")),
    ("EM induced", lambda r: format_estimate(r.induced.estimate, "+.3f")),
    ("random", lambda r: _null(r.induced.null, "+.3f")),
    ("coherent share", lambda r: format_estimate(r.coherence_rate, ".1%")),
    ("coherent share change", lambda r: f"{r.coherence_change.estimate.value:+.3f}"),
]


def summary_table(
    evaluation: Mapping[str, Any],
    cosines: Any,
    random95: float,
    layer: int,
    ablation: AblationSweep | JudgedSweep,
    steering: SteeringGrid | JudgedSweep,
    metric: str,
    sae: Mapping[str, Any] | None = None,
    control: Mapping[str, Any] | None = None,
) -> str:
    """The table of `run_demo`; `metric` says what the causal stages measured (judged sweeps' rows are in the
    judged EM rate, the others in the contrast margin)."""
    judged = isinstance(ablation, JudgedSweep)
    base = evaluation["base"]
    rows = [READING, ""] + (control_rows(control, judged) if control is not None else [])
    rows += ["| model | general margin | change from base (paired) | fluency |", "| --- | --- | --- | --- |"]
    for name, r in evaluation.items():
        change = paired_difference(base["margins"], r["margins"])._asdict()
        rows.append(
            f"| {name} | {format_estimate(r['margin'], '+.2f')} | "
            f"{format_estimate(change, '+.2f') if name != 'base' else ''} | "
            f"{r['fluency']['value']:+.2f} |"
        )
    names = cosines.names
    rows += [
        "",
        f"Cosine of model-diff directions at layer {layer} (random directions: {random95:.2f} at the 95th "
        "percentile):",
        "",
    ]
    rows += [
        f"- {a} vs {names[j]}: {cosines.values[i, j, layer]:+.2f}"
        for i, a in enumerate(names)
        for j in range(i + 1, len(names))
    ]
    rows += [
        "",
        f"Ablation and steering in {metric}. Each effect beside the same edit along random directions: their "
        "median [95% range], and the effect's percentile among them.",
        "",
    ]
    rows += _markdown(ABLATED + (JUDGED_ABLATION if judged else CONTRAST_ABLATION), ablation.rows)
    rows += [""] + _markdown(STEERED + (JUDGED_STEERING if judged else CONTRAST_STEERING), steering.rows)
    if sae is not None:
        rows += [
            "",
            f"SAE latents rising in every EM finetune more than in any control, on both answers of the first "
            f"{sae['items']} general items: {sae['n_consistent']}; the top ones by consistency (rise over the base "
            "in each EM finetune / each control):",
            "",
        ]
        for latent in sae["top"]:
            rise = " / ".join(f"{latent['mean'][n] - latent['mean']['base']:+.2f}" for n in sae["finetunes"])
            held = " / ".join(f"{latent['mean'][n] - latent['mean']['base']:+.2f}" for n in sae["controls"])
            rows.append(f"- latent {latent['latent']}: {rise}  (controls {held})")
    return "\n".join(rows)


def _markdown(columns: Sequence[Column], rows: Sequence[Any]) -> list[str]:
    """A markdown table of the named (not random) directions' rows."""
    lines = ["| " + " | ".join(title for title, _ in columns) + " |", "| " + " | ".join(["---"] * len(columns)) + " |"]
    return lines + [
        "| " + " | ".join(cell(r) for _, cell in columns) + " |" for r in rows if not is_random(r.direction)
    ]


def control_rows(control: Mapping[str, Any], judged: bool = False) -> list[str]:
    """The positive control's lines of the table: B's cosine, share removed and steering shift beside the nulls
    (`judged`: of the judged EM rate)."""
    layer, removed, steered = control["layer"], control["ablation"], control["steering"]
    shift, spec, excess, shifted = (
        ("induced", "+.3f", "judged EM rate over the base's", "judged EM rate induced in")
        if judged
        else ("shift", "+.2f", "general shift from base", "margin shift of")
    )
    return [
        f"Positive control: {control['organism']}, a rank-1 LoRA on layer {layer} whose shift can only ride on its B "
        f"({excess} {format_estimate(removed['excess'], spec)}):",
        "",
        "| test of B | value | random directions |",
        "| --- | --- | --- |",
        f"| cosine of the model-diff direction at layer {layer} with B | {control['cosine']:+.2f} | "
        f"{_null(AgainstNull(**control['null_cosine']))} |",
        f"| share of the shift removed by ablating B at layer {layer} | "
        f"{format_estimate(removed['share_removed'], '+.2f')} | "
        f"{_null(AgainstNull(**removed['null_share_removed']))} |",
        f"| {shifted} the base steered along B (layer {layer}, {steered['scale']:g} of the residual norm) | "
        f"{format_estimate(steered[shift], spec)} | {_null(AgainstNull(**steered[f'null_{shift}']), spec)} |",
        "",
        "The full-rank organisms, whose directions are not known:",
        "",
    ]


def control_line(control: Mapping[str, Any]) -> str:
    """The positive control's finding and ablation in one printed line, as soon as they are measured."""
    removed = control["ablation"]
    return (
        f"      B found: cosine {control['cosine']:+.2f} (random {_null(AgainstNull(**control['null_cosine']))}); "
        f"ablating it removes {format_estimate(removed['share_removed'], '+.2f')} of the shift "
        f"(random {_null(AgainstNull(**removed['null_share_removed']))})"
    )


def _null(null: AgainstNull | None, spec: str = "+.2f") -> str:
    if null is None:
        return "(no random directions)"
    return (
        f"{null.null_median:{spec}} [{null.null_low:{spec}}, {null.null_high:{spec}}], "
        f"p{null.percentile:.0f} of {null.n_null}"
    )
