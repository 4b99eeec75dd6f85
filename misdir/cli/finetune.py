"""`misdir finetune`: LoRA-finetune a model on a chat dataset; the options are FinetuneConfig's and
EditOptions' fields, and --watch."""

from __future__ import annotations

import typer

from misdir.cli.common import _fail, _model_shape, _refused
from misdir.cli.options import command
from misdir.configs import FinetuneCommandConfig


@command(FinetuneCommandConfig)
def finetune(cfg: FinetuneCommandConfig) -> None:
    """LoRA-finetune MODEL on DATA (loss on the assistant's answers) and write a PEFT adapter to OUT."""
    from misdir.finetune import check_inputs
    from misdir.finetune import finetune as run_finetune
    from misdir.monitor import Watch

    shape = _model_shape({"--model": cfg.model})
    with _refused():  # the direction files read
        edits = cfg.edits.edits()
        watch = Watch.from_option(cfg.watch, n_random=cfg.watch_random) if cfg.watch else None
        if cfg.watch_random and not cfg.watch:
            raise ValueError("--watch-random needs --watch")
    if shape is not None:
        try:
            cfg.training.resolve(shape.n_layers)  # --layers in range
            check_inputs(edits, watch, shape)  # directions of the model's shape, layers in range
        except ValueError as error:
            _fail(error, usage=True)
    try:
        result = run_finetune(cfg.model, cfg.data, cfg.out, cfg.training, edits=edits, watch=watch, resume=cfg.resume)
    except ValueError as error:
        _fail(error)
    if result.already_finished:
        typer.echo(
            f"{result.out}: already finished ({result.steps} steps, loss {result.final_loss:.4f}); "
            "nothing to resume, nothing rewritten"
        )
        return
    total = "" if result.total_seconds is None else f", {result.total_seconds:.0f} s in all"
    took = f"{result.seconds:.0f} s" + (f" this call{total}" if result.resumed_from else "")
    typer.echo(f"{result.out}: {result.steps} steps, loss {result.final_loss:.4f}, {took}")
    typer.echo(f"next: misdir evaluate --model {result.out} --base {cfg.model} --out {result.out.parent / 'evaluate'}")
