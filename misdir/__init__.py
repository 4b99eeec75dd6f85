"""misdir: emergent misalignment, mechanistically.

load -> hook/cache -> directions -> similarity -> interventions -> evaluation.
"""

from misdir.cache import cache_activations
from misdir.data import ChatExample, load_chat_jsonl, make_dataset
from misdir.directions import DirectionSet, mean_difference, split_by_judgement
from misdir.generate import Answer, generate, load_answers, save_answers
from misdir.hooks import SITES, hook_name, hooks
from misdir.interventions import ablate, orthogonalize, steer
from misdir.models import Model, ModelLoadError, as_model, load_model
from misdir.sae import (
    SAETrainConfig,
    clamp_latents,
    diff_latents,
    latent_activations,
    latent_direction,
    load_sae,
    rank_latents,
    train_sae,
    zero_latents,
)
from misdir.similarity import cosine_by_layer, cosine_matrix, pairwise_cosines
from misdir.steering_vectors import load_steering_vector

__all__ = [
    "SITES",
    "Answer",
    "ChatExample",
    "DirectionSet",
    "Model",
    "ModelLoadError",
    "SAETrainConfig",
    "ablate",
    "as_model",
    "cache_activations",
    "clamp_latents",
    "cosine_by_layer",
    "cosine_matrix",
    "diff_latents",
    "generate",
    "hook_name",
    "hooks",
    "latent_activations",
    "latent_direction",
    "load_answers",
    "load_chat_jsonl",
    "load_model",
    "load_sae",
    "load_steering_vector",
    "make_dataset",
    "mean_difference",
    "orthogonalize",
    "pairwise_cosines",
    "rank_latents",
    "save_answers",
    "split_by_judgement",
    "steer",
    "train_sae",
    "zero_latents",
]
