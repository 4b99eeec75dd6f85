"""Sparse-autoencoder latents at misdir's hook points: load or train SAEs with sae-lens, diff models on them,
and intervene on single latents.

The SAEs are sae-lens's own (`sae_lens.SAE`): loaded by release and id from the hub (`SAE.from_pretrained`) or
from a directory holding `cfg.json` + `sae_weights.safetensors` (`SAE.load_from_disk`), and trained with
sae-lens's `SAETrainer` on activations that `misdir.cache_activations` streams to shards. An SAE names its
hook in TransformerLens's vocabulary (`cfg.metadata.hook_name`, e.g. `blocks.15.hook_resid_post`), which is
misdir's too, so it attaches to any model misdir can hook.

The persona-latent analysis (Wang et al. 2025): each latent's mean activation and firing rate on the same
texts for a base model and its finetunes (`diff_latents`), latents ranked by how consistently they rise in the
EM finetunes and not in the controls (`rank_latents`), and their causal effect through steering along a
latent's decoder row or clamping it (`clamp_latents`), measured with the contrast metric.

One module a stage; each imports only from the stages above it:
`load` (load, attach, read latents) <- `intervene` (clamp, zero, splice) and `train` and `diff` (model diffing)
<- `effects` (causal effects against the mean-difference direction).
"""

from misdir.sae.diff import (
    LatentDiff,
    LatentStats,
    Ranking,
    decoder_cosines,
    diff_latents,
    diff_record,
    latent_stats,
    plot_diff,
    rank_latents,
    save_diff,
    top_snippets,
)
from misdir.sae.effects import Effect, latent_effects, plot_effects, steering_nulls
from misdir.sae.intervene import clamp_latents, next_token_loss, splice_sae, spliced_loss, zero_latents
from misdir.sae.load import (
    SAE_FILES,
    decoder_rows,
    describe_sae,
    encode_latents,
    latent_activations,
    latent_direction,
    load_sae,
    sae_site,
)
from misdir.sae.train import (
    Architecture,
    SAEMetrics,
    SAETrainConfig,
    SAETrainResult,
    cache_for_training,
    python_docs,
    sae_metrics,
    train_sae,
    train_sae_on_shards,
    training_inputs,
)

__all__ = [
    "SAE_FILES",
    "Architecture",
    "Effect",
    "LatentDiff",
    "LatentStats",
    "Ranking",
    "SAEMetrics",
    "SAETrainConfig",
    "SAETrainResult",
    "cache_for_training",
    "clamp_latents",
    "decoder_cosines",
    "decoder_rows",
    "describe_sae",
    "diff_latents",
    "diff_record",
    "encode_latents",
    "latent_activations",
    "latent_direction",
    "latent_effects",
    "latent_stats",
    "load_sae",
    "next_token_loss",
    "plot_diff",
    "plot_effects",
    "steering_nulls",
    "python_docs",
    "rank_latents",
    "sae_metrics",
    "sae_site",
    "save_diff",
    "splice_sae",
    "spliced_loss",
    "top_snippets",
    "train_sae",
    "train_sae_on_shards",
    "training_inputs",
    "zero_latents",
]
