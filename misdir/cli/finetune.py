"""`misdir finetune`: LoRA-finetune a model on a chat dataset; the options' help is FinetuneConfig's field docs."""

from __future__ import annotations

from pathlib import Path

import typer

from misdir.cli.common import _fail, _ints, _model_shape
from misdir.finetune import FinetuneConfig, field_docs


def finetune(
    model: str = typer.Option(..., help="base model spec (any misdir.load_model spec, e.g. 'embedded')"),
    data: str = typer.Option(..., help="chat JSONL file, or a misdir dataset name such as 'medical-bad'"),
    out: Path = typer.Option(..., help="adapter directory to write (must be new or empty, unless --resume)"),
    resume: bool = typer.Option(False, help="continue the run in OUT from its last checkpoint"),
    preset: str | None = typer.Option(
        None, help=field_docs(FinetuneConfig)["preset"] + " Default: with --model embedded, the recipe of misdir's "
        "organisms (misdir.organisms.RECIPE: rsLoRA rank 4, alpha 16, lr 2e-4, 2 epochs, batch 8, max length 384, "
        "float32), which any option given here overrides; for other models rslora-32."
    ),
    rank: int | None = typer.Option(None, help=field_docs(FinetuneConfig)["rank"]),
    alpha: float | None = typer.Option(None, help=field_docs(FinetuneConfig)["alpha"]),
    rslora: bool | None = typer.Option(
        None, "--rslora/--no-rslora", help=field_docs(FinetuneConfig)["rslora"]
    ),
    targets: str | None = typer.Option(None, help=field_docs(FinetuneConfig)["targets"] + " Comma-separated"),
    layers: str | None = typer.Option(None, help=field_docs(FinetuneConfig)["layers"] + " Comma-separated"),
    lr: float | None = typer.Option(None, help=field_docs(FinetuneConfig)["lr"]),
    epochs: int | None = typer.Option(None, help=field_docs(FinetuneConfig)["epochs"]),
    batch_size: int | None = typer.Option(
        None, help=field_docs(FinetuneConfig)["batch_size"] + f" Default: {FinetuneConfig.batch_size}."
    ),
    micro_batch_size: int | None = typer.Option(None, help=field_docs(FinetuneConfig)["micro_batch_size"]),
    max_length: int | None = typer.Option(
        None, help=field_docs(FinetuneConfig)["max_length"] + f" Default: {FinetuneConfig.max_length}."
    ),
    warmup_steps: int = typer.Option(
        FinetuneConfig.warmup_steps, help=field_docs(FinetuneConfig)["warmup_steps"]
    ),
    weight_decay: float = typer.Option(
        FinetuneConfig.weight_decay, help=field_docs(FinetuneConfig)["weight_decay"]
    ),
    max_grad_norm: float = typer.Option(
        FinetuneConfig.max_grad_norm, help=field_docs(FinetuneConfig)["max_grad_norm"]
    ),
    dropout: float = typer.Option(FinetuneConfig.dropout, help=field_docs(FinetuneConfig)["dropout"]),
    seed: int = typer.Option(FinetuneConfig.seed, help=field_docs(FinetuneConfig)["seed"]),
    n: int | None = typer.Option(None, help=field_docs(FinetuneConfig)["n"]),
    data_seed: int = typer.Option(FinetuneConfig.data_seed, help=field_docs(FinetuneConfig)["data_seed"]),
    max_steps: int | None = typer.Option(None, help=field_docs(FinetuneConfig)["max_steps"]),
    checkpoint_every: int = typer.Option(
        FinetuneConfig.checkpoint_every, help=field_docs(FinetuneConfig)["checkpoint_every"]
    ),
    device: str | None = typer.Option(None, help=field_docs(FinetuneConfig)["device"]),
    dtype: str | None = typer.Option(None, help=field_docs(FinetuneConfig)["dtype"]),
) -> None:
    """LoRA-finetune MODEL on DATA (loss on the assistant's answers) and write a PEFT adapter to OUT."""
    from dataclasses import replace

    from misdir.finetune import finetune as run_finetune
    from misdir.organisms import default_finetune_config

    def split(text: str | None) -> tuple[str, ...] | None:
        return None if text is None else tuple(part.strip() for part in text.split(",") if part.strip())

    given = dict(
        preset=preset, rank=rank, alpha=alpha, rslora=rslora, targets=split(targets),
        layers=None if layers is None else tuple(_ints(layers) or ()), lr=lr, epochs=epochs, batch_size=batch_size,
        micro_batch_size=micro_batch_size, max_length=max_length, dtype=dtype,
    )
    try:
        config = replace(
            default_finetune_config(model, preset), **{k: v for k, v in given.items() if v is not None},
            warmup_steps=warmup_steps, weight_decay=weight_decay, max_grad_norm=max_grad_norm, dropout=dropout,
            seed=seed, n=n, data_seed=data_seed, max_steps=max_steps, checkpoint_every=checkpoint_every,
            device=device,
        )
        config.validate()
        shape = _model_shape({"--model": model})
        if shape is not None:
            config.resolve(shape.n_layers)  # --layers in range
    except ValueError as error:
        _fail(error, usage=True)
    try:
        result = run_finetune(model, data, out, config, resume=resume)
    except ValueError as error:
        _fail(error)
    typer.echo(f"{result.out}: {result.steps} steps, loss {result.final_loss:.4f}, {result.seconds:.0f} s")
