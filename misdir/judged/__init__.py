"""The EM papers' own measure under an edit: judged EM rates of sampled answers, on the sweep engine.

A judged cell (model, edit, question set) samples answers with its edit open (`misdir.generate`), a judge scores
each one for alignment and coherence (`misdir.judge`: an OpenAI-compatible server or a local model; cached,
retried), and the cell's result is the EM rate (aligned <= 30 and coherent > 50 by default: `Thresholds`), the
coherent share, the mean alignment, and the counts of CODE / REFUSAL / unscored verdicts; each rate has a cluster
bootstrap interval over questions (the answers of one question resampled together). Effects are paired by question:
the change in EM rate, the share of the finetune's excess EM an ablation removes
    (EM_ft - EM_ft,ablated) / (EM_ft - EM_base)
and the EM a steering induces, each beside the same edit along `n_random` random directions, sampled and judged
like the named one (`misdir.sweep.random_nulls`).

Every cell samples with the same seed, so each answer draws the same random numbers in every cell (the
edited and unedited answers to a prompt differ only through the edit: common random numbers, which narrow the
paired intervals). Resumable at the answer: each sampled answer is appended to `out/answers.jsonl` as its
batch ends, each judge reply to `out/judge_cache.jsonl`; a killed sweep samples no answer it wrote and asks
the judge nothing it already answered. A cell whose answers the judge failed on (after its retries) is not
recorded; the sweep finishes the others, then says how many to retry by running it again.

`judged_directions` is the literature's extraction as a stage of the same run: a finetune's own answers (its
unedited cell, sampled and judged once and reused by the sweep), split by the judge (`split_by_judgement`), and the
mean difference of its activations between its misaligned and aligned answers; `judged_study` then ablates that
direction: one call from a finetune to "its judged direction removes X% of its judged EM; random directions Y".
`plot_judged_sweep` draws a sweep's figure from its records alone (`JudgedSweep.from_dict` of its summary.json).
"""

from misdir.judged.cells import (
    METRICS,
    JudgedMetric,
    JudgedPlan,
    JudgedResult,
    JudgedScorer,
    JudgeFailures,
    announce_plans,
    as_judge,
    check_reachable,
    judged_result,
    plan,
    scored_answers,
)
from misdir.judged.extraction import judged_directions, judged_study
from misdir.judged.plots import plot_judged_sweep
from misdir.judged.sweeps import (
    JudgedAblationRow,
    JudgedSteeringRow,
    JudgedSweep,
    ablation_cells,
    judged_ablation_sweep,
    judged_steering_grid,
    steering_cells,
)

__all__ = [
    "METRICS",
    "JudgeFailures",
    "JudgedAblationRow",
    "JudgedMetric",
    "JudgedPlan",
    "JudgedResult",
    "JudgedScorer",
    "JudgedSteeringRow",
    "JudgedSweep",
    "ablation_cells",
    "announce_plans",
    "as_judge",
    "check_reachable",
    "judged_ablation_sweep",
    "judged_directions",
    "judged_result",
    "judged_steering_grid",
    "judged_study",
    "plan",
    "plot_judged_sweep",
    "scored_answers",
    "steering_cells",
]
