"""`misdir demo`: the main job on a base and its finetunes."""

from __future__ import annotations

from typing import Any

from misdir.cli.common import (
    _check_layers,
    _check_random,
    _judge_errors,
    _judge_model,
    _judged_metric,
    _model_shape,
    _named,
    _refused,
)
from misdir.cli.options import command
from misdir.configs import DemoConfig


@command(DemoConfig)
def demo(cfg: DemoConfig) -> None:
    """The main job: a positive control on a rank-1 organism, then evaluation, directions, cosines, ablation and
    steering on a base and its finetunes (resumable; with --judge, the ablation and steering of the positive
    control and of the finetunes on judged EM rates of sampled answers)."""
    from misdir.demo import positive_organism, run_demo

    _check_random(cfg.random)
    positive = None if cfg.positive in (None, "none") else cfg.positive
    with _refused():
        positive_organism(positive, cfg.model)
    metric = _judged_metric(cfg)
    shape = _model_shape({"--model": cfg.model, **_judge_model(cfg)})
    _check_layers("--layer", None if cfg.layer is None else [cfg.layer], shape)
    judged: dict[str, Any] = {} if metric is None else dict(judge=cfg.judge, metric=metric, judge_url=cfg.judge_url)
    with _judge_errors():
        run_demo(
            cfg.model,
            finetunes=dict(map(_named, cfg.finetune)) if cfg.finetune else None,
            controls=dict(map(_named, cfg.control)) if cfg.control else None,
            out=cfg.out,
            figures=cfg.figures,
            limit=cfg.limit or None,
            layer=cfg.layer,
            n_random=cfg.random,
            device=cfg.device,
            positive=positive,
            dry_run=cfg.dry_run,
            **judged,
        )
