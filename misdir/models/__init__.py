"""Stage 1 of the pipeline, loading: a base model or an EM finetune as a hookable `Model`.

- `load.py`: `load_model(spec)` for every kind of spec (embedded, `em:` catalog names, GGUF files, local
  Hugging Face folders, PEFT adapters, hub ids), and `as_model` (the one conversion at the public edge);
- `model.py`: the `Model` record, `ModelLike`, `ModelShape`;
- `shape.py`: `model_shape(spec)`, a model's depth and width without loading weights;
- `gguf.py`: the embedded model's file and the GGUF conversion cache;
- `architectures.py`: the one table of per-architecture module names (hooks, finetune targets, writers).

The catalog of public EM organisms is `misdir.catalog`.
"""

from misdir.models.architectures import (
    ARCHITECTURES,
    PROJECTIONS,
    Architecture,
    architecture_of,
    decoder_layers,
    decoder_model,
)
from misdir.models.gguf import EMBEDDED, cache_dir, embedded_gguf
from misdir.models.load import QUIET_BELOW_BYTES, as_model, load_model
from misdir.models.model import Model, ModelLike, ModelLoadError, ModelShape, execution_device
from misdir.models.shape import model_shape
from misdir.provenance import misdir_version

__all__ = [
    "ARCHITECTURES",
    "EMBEDDED",
    "PROJECTIONS",
    "QUIET_BELOW_BYTES",
    "Architecture",
    "Model",
    "ModelLoadError",
    "ModelLike",
    "ModelShape",
    "architecture_of",
    "as_model",
    "cache_dir",
    "decoder_layers",
    "decoder_model",
    "embedded_gguf",
    "execution_device",
    "load_model",
    "misdir_version",
    "model_shape",
]
