"""LoRA finetuning with peft: the recipes of the emergent-misalignment literature, offline and resumable.

`finetune(model_spec, data, out, config)` trains a PEFT LoRA adapter on chat data with the loss on the
last assistant message only, in a plain PyTorch loop (AdamW, linear warmup then linear decay), and
writes a PEFT adapter directory that `misdir.load_model(out)` loads, with `misdir.json` beside it.

Presets (`FinetuneConfig.preset`):
- `rslora-32`: rsLoRA rank 32, alpha 64 on q, k, v, o, gate, up and down projections of every layer,
  lr 1e-5, 1 epoch (Turner et al. 2025, "Model Organisms for Emergent Misalignment", after Betley et al.);
- `rank1-single`: one rank-1 rsLoRA adapter (alpha 256, lr 2e-5) on one layer's `mlp.down_proj`,
  by default the middle layer (layer 24 of 48 on Qwen2.5-14B in the paper);
- `rank1-multi`: the same on several layers' `down_proj`; by default three groups of three adjacent layers
  at the relative depths of the paper's [15-17, 21-23, 27-29] of 48.

Runs are deterministic given the seed: the data order of epoch e depends only on (seed, e), so a resumed
run skips the batches already consumed and ends at the same weights as an uninterrupted one (bit for
bit on CPU). Checkpoints (adapter, optimizer, scheduler, RNG states, step) go to `out/checkpoints/`
every `checkpoint_every` steps and are removed once the final adapter is written.

A `model_spec` that is itself an adapter (an organism) is merged into its base's weights, and the new adapter
trains on top of it; `load_model(out)` loads it on the merged organism (`misdir.realign` trains EM organisms on
their control data this way).

Without a config, `default_config(model_spec)` picks the settings: the organisms' recipe (`EMBEDDED_RECIPE`)
for the embedded model, else `rslora-32`.

Training under edits: `finetune(..., edits=[Edit("ablate", directions, layers)])` keeps an ablation (CAFT)
or a steering (preventative steering) open during each training step, never in the saved adapter
(`edits.py`).

Layout: `config.py` (presets, `FinetuneConfig`, `default_config`), `data.py` (tokenized examples, batches,
the loss), `trainer.py` (`finetune`, the loop), `checkpoints.py` (the run folder, resume), `save.py` (the
adapter and its `misdir.json` record), `edits.py` (edits open while training).
"""

from misdir.finetune.config import (
    DEFAULT_N,
    EMBEDDED_RECIPE,
    PRESETS,
    FinetuneConfig,
    Preset,
    default_config,
)
from misdir.finetune.data import IGNORE, Example, answer_loss, collate, epoch_order, tokenize_example
from misdir.finetune.edits import Edit, EditOptions, check_edits, training_edits
from misdir.finetune.trainer import FinetuneResult, check_inputs, finetune

__all__ = [
    "DEFAULT_N",
    "EMBEDDED_RECIPE",
    "Edit",
    "EditOptions",
    "IGNORE",
    "PRESETS",
    "Example",
    "FinetuneConfig",
    "FinetuneResult",
    "Preset",
    "answer_loss",
    "check_edits",
    "check_inputs",
    "collate",
    "default_config",
    "epoch_order",
    "finetune",
    "tokenize_example",
    "training_edits",
]
