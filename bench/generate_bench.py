"""Decode speed of edited generation, side by side in one run: plain Hugging Face `generate`, under
`misdir.ablate` at every layer, an `orthogonalize`d copy (the same edit in the weights, no hooks), and
TransformerLens's `TransformerBridge.generate` under the same ablation.

GPU (device tool), random-weight Qwen2.5-7B shape in bf16, one cache kind per call (compiles take minutes):
    python bench/generate_bench.py --device cuda --shape qwen2.5-7b --batches 1 64 --caches dynamic --lens
    python bench/generate_bench.py --device cuda --shape qwen2.5-7b --batches 1 64 --caches static
CPU smoke run, and the embedded model's hooked-generation ratio:
    python bench/generate_bench.py --device cpu --shape tiny --batches 1 8 --new-tokens 16 --lens
    python bench/generate_bench.py --device cpu --shape embedded --batches 16 --new-tokens 48 \
        --variants plain ablate

Each variant generates exactly `--new-tokens` greedy tokens (min = max new tokens) after a random prompt of
`--prompt` tokens, no padding. Decode tokens/s = batch x (new - 1) / (t(new) - t(1)): the prefill and the
first token are taken out by timing a one-token generation too. Medians of `--repeats` after a warm-up.
Cache kinds: `dynamic` (transformers' default), `static` (on CUDA transformers compiles the decode step
itself, mode reduce-overhead = CUDA graphs), `static-eager` (static, compilation disabled),
`static-compiled` (compiled on any device, CPU included). Hooks are registered before the compiled call.

Roofline: one decode step must read every weight once and the whole KV cache; at `--bandwidth` bytes/s that
bounds steps/s, and tokens/s = batch x steps/s. Checks printed after the table: greedy tokens of ablation at
resid_pre/mid/post of every layer against the orthogonalized copy, hooks on vs off after a compiled call
(stale hooks in a compiled graph would show here), and the bridge against Hugging Face under the same edit.
Writes JSON to $OUT/generate_bench.json when $OUT is set.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from contextlib import nullcontext
from functools import partial

import shapes  # noqa: F401  (puts this checkout first on sys.path)
import torch

RESID = ("resid_pre", "resid_mid", "resid_post")
VARIANTS = ("plain", "ablate", "ablate3", "orthogonalized", "lens")


def load(args: argparse.Namespace):
    """(misdir Model, directory holding its config.json) for the chosen shape."""
    from transformers import AutoTokenizer

    from misdir import Model, load_model

    dtype = getattr(torch, args.dtype)
    if args.shape == "embedded":
        model = load_model("embedded", device=args.device, dtype=dtype)
        return model, model.provenance["source"]
    hf = shapes.build(args.shape, args.device, dtype)
    folder = tempfile.mkdtemp(prefix="generate-bench-")
    hf.config.save_pretrained(folder)
    shapes.stand_in_tokenizer(hf.config.vocab_size).save_pretrained(folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)  # read back: TransformerLens wants its name_or_path
    return Model(hf=hf, tokenizer=tokenizer, spec=f"random {args.shape}"), folder


def kv_bytes_per_token(config, dtype: torch.dtype) -> int:
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    return 2 * config.num_hidden_layers * config.num_key_value_heads * head_dim * dtype.itemsize


def hf_generator(model, cache: str, max_cache_len: int) -> Callable[[torch.Tensor, int], torch.Tensor]:
    from transformers import GenerationConfig
    from transformers.generation.configuration_utils import CompileConfig

    options: dict = {}
    if cache != "dynamic":
        options = {"cache_implementation": "static", "max_cache_len": max_cache_len}
    if cache == "static-eager":
        options["disable_compile"] = True
    if cache == "static-compiled":
        compile_config = CompileConfig()
        compile_config._compile_all_devices = True
        options["compile_config"] = compile_config

    def run(ids: torch.Tensor, n: int) -> torch.Tensor:
        config = GenerationConfig(
            do_sample=False, max_new_tokens=n, min_new_tokens=n, pad_token_id=0, eos_token_id=None, **options
        )
        with torch.inference_mode():
            return model.generate(
                input_ids=ids, attention_mask=torch.ones_like(ids), generation_config=config
            )

    return run


def lens_generator(bridge) -> Callable[[torch.Tensor, int], torch.Tensor]:
    def run(ids: torch.Tensor, n: int) -> torch.Tensor:
        with torch.inference_mode():
            return bridge.generate(
                ids, max_new_tokens=n, do_sample=False, stop_at_eos=False, verbose=False, return_type="tokens"
            )

    return run


def seconds(fn: Callable[[], object], device: str) -> float:
    shapes.synchronize(device)
    start = time.perf_counter()
    fn()
    shapes.synchronize(device)
    return time.perf_counter() - start


def decode_rates(
    jobs: dict[str, tuple[Callable, Callable]],
    ids: torch.Tensor,
    new: int,
    repeats: int,
    device: str,
    interleave: bool,
    fresh: Callable[[], None] | None = None,
) -> tuple[dict[str, dict[str, float]], dict[str, torch.Tensor]]:
    """Per job (a generate function and the context it runs in): median times of a one-token and a
    `new`-token generation, the decode rate from their difference, and the tokens of the last run.
    Interleaved, each repeat runs every job in turn (fair under a fluctuating load; enters each context
    once per repeat); otherwise each job runs all its repeats inside one context, after `fresh()` (for a
    compiled decode step: a compilation of its own, with its hooks in it)."""
    samples: dict[str, list[tuple[float, float]]] = {name: [] for name in jobs}
    tokens: dict[str, torch.Tensor] = {}

    def once(name: str, run: Callable) -> tuple[float, float]:
        one = seconds(lambda: run(ids, 1), device)
        full = seconds(lambda: tokens.__setitem__(name, run(ids, new)), device)
        return one, full

    if interleave:
        for run, context in jobs.values():  # warm-up
            with context():
                run(ids, new)
        for _ in range(repeats):
            for name, (run, context) in jobs.items():
                with context():
                    samples[name].append(once(name, run))
    else:
        for name, (run, context) in jobs.items():
            if fresh is not None:
                fresh()
            with context():
                run(ids, new)  # warm-up (and compilation)
                samples[name] = [once(name, run) for _ in range(repeats)]
    batch, out = ids.shape[0], {}
    for name, pairs in samples.items():
        one = statistics.median(p[0] for p in pairs)
        full = statistics.median(p[1] for p in pairs)
        out[name] = {
            "seconds": full,
            "prefill_seconds": one,
            "decode_tokens_per_s": batch * (new - 1) / max(full - one, 1e-9),
            "tokens_per_s": batch * new / full,
        }
    return out, tokens


def fresh_compilation(*models) -> None:
    """Forget every compiled decode step: torch.compile does not notice hooks registered after a
    compilation made without hooks (seen on torch 2.13, bench/NOTES.md), so each variant compiles anew."""
    torch._dynamo.reset()
    for model in models:
        if model is not None and hasattr(model.hf, "_compiled_call"):
            del model.hf._compiled_call


def first_divergence(a: torch.Tensor, b: torch.Tensor, prompt: int) -> dict[str, float]:
    """How far two greedy outputs agree after the prompt: rows identical, mean length of the common prefix."""
    same = (a[:, prompt:] == b[:, prompt:]).cpu()
    prefix = torch.where(same.all(-1), same.shape[-1], (~same).int().argmax(-1)).float()
    return {"rows_identical": float(same.all(-1).float().mean()), "mean_common_prefix": float(prefix.mean())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shape", default="tiny", choices=[*sorted(shapes.SHAPES), "embedded"])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default=None, help="default: bfloat16 on CUDA, float32 on CPU")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 64])
    parser.add_argument("--prompt", type=int, default=32, help="prompt tokens per row")
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument(
        "--caches",
        nargs="+",
        default=["dynamic"],
        choices=["dynamic", "static", "static-eager", "static-compiled"],
    )
    parser.add_argument(
        "--variants", nargs="+", default=["plain", "ablate", "ablate3", "orthogonalized"], choices=VARIANTS
    )
    parser.add_argument(
        "--lens", action="store_true", help="add the TransformerBridge variant (dynamic cache)"
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--bandwidth", type=float, default=3.35e12, help="bytes/s for the roofline (H100 SXM spec)"
    )
    parser.add_argument(
        "--interleave",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="alternate the variants in each repeat (default: on CPU, where the load fluctuates; never with "
        "a compiled cache)",
    )
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (torch.set_num_threads)")
    args = parser.parse_args()
    args.dtype = args.dtype or ("bfloat16" if args.device.startswith("cuda") else "float32")
    if args.threads:
        torch.set_num_threads(args.threads)
    interleave = args.interleave if args.interleave is not None else not args.device.startswith("cuda")
    if interleave and any(c in ("static", "static-compiled") for c in args.caches):
        parser.error("--interleave re-registers hooks every repeat, which recompiles a compiled decode step")
    variants = [v for v in args.variants if v != "lens"] + (
        ["lens"] if args.lens or "lens" in args.variants else []
    )

    from misdir import ablate, orthogonalize

    model, folder = load(args)
    cfg, dtype = model.config, getattr(torch, args.dtype)
    r = torch.randn(model.d_model, generator=torch.Generator().manual_seed(1))
    ortho = orthogonalize(model, r) if "orthogonalized" in variants else None
    weight_bytes = shapes.parameter_bytes(model.hf)
    max_cache_len = args.prompt + args.new_tokens
    generator = torch.Generator().manual_seed(0)
    prompts = {
        b: torch.randint(3, cfg.vocab_size, (b, args.prompt), generator=generator).to(args.device)
        for b in args.batches
    }

    edits = {
        "plain": lambda m: nullcontext(),
        "ablate": lambda m: ablate(m, r),
        "ablate3": lambda m: ablate(m, r, site=RESID),
        "orthogonalized": lambda m: nullcontext(),
        "lens": lambda m: ablate(m, r),
    }
    rows, checks = [], {}
    for cache in args.caches:
        for batch, ids in prompts.items():
            jobs = {}
            for variant in [v for v in variants if v != "lens"]:
                target = ortho if variant == "orthogonalized" else model
                jobs[variant] = (
                    hf_generator(target.hf, cache, max_cache_len),
                    partial(edits[variant], target),
                )
            compiled = cache == "static-compiled" or (cache == "static" and args.device.startswith("cuda"))
            fresh = partial(fresh_compilation, model, ortho) if compiled else None
            before = jobs["plain"][0](ids, args.new_tokens) if "plain" in jobs else None
            results, outputs = decode_rates(
                jobs, ids, args.new_tokens, args.repeats, args.device, interleave, fresh
            )
            for variant in jobs:
                rows.append({"cache": cache, "batch": batch, "variant": variant, **results[variant]})
            if compiled and "plain" in jobs and "ablate3" in outputs:
                fresh_compilation(model, ortho)  # compile without hooks, then open ablate3 on top of it
                jobs["plain"][0](ids, args.new_tokens)
                with jobs["ablate3"][1]():
                    late = jobs["ablate3"][0](ids, args.new_tokens)
                checks[
                    f"{cache} b{batch} ablate3 opened after a hook-free compilation vs compiled with it"
                ] = first_divergence(late, outputs["ablate3"], args.prompt)
            if before is not None:  # hooks gone after the block, also from a compiled decode step?
                again = jobs["plain"][0](ids, args.new_tokens)
                checks[f"{cache} b{batch} plain after hooks vs before"] = first_divergence(
                    again, before, args.prompt
                )
            for edited in ("ablate", "ablate3"):  # and present inside it (these should differ from plain)
                if edited in outputs and before is not None:
                    checks[f"{cache} b{batch} {edited} vs plain (should differ)"] = first_divergence(
                        outputs[edited], before, args.prompt
                    )
            if "ablate3" in outputs and "orthogonalized" in outputs:
                checks[f"{cache} b{batch} ablate3 vs orthogonalized"] = first_divergence(
                    outputs["ablate3"], outputs["orthogonalized"], args.prompt
                )
            checks[f"{cache} b{batch} outputs"] = {
                k: v[:, args.prompt :].tolist()[:1] for k, v in outputs.items()
            }
            if "ablate" in outputs:
                checks.setdefault("ablate_outputs", {})[f"{cache} b{batch}"] = outputs["ablate"]

    if "lens" in variants:
        del ortho
        from transformer_lens.model_bridge import TransformerBridge

        bridge = TransformerBridge.boot_transformers(
            folder, hf_model=model.hf, tokenizer=model.tokenizer, device=args.device, dtype=dtype
        )
        for batch, ids in prompts.items():
            run = lens_generator(bridge)
            jobs = {"lens": (run, partial(ablate, bridge, r))}
            results, outputs = decode_rates(jobs, ids, args.new_tokens, args.repeats, args.device, interleave)
            tokens = outputs["lens"]
            rows.append({"cache": "lens (its own)", "batch": batch, "variant": "lens", **results["lens"]})
            reference = checks.get("ablate_outputs", {}).get(f"dynamic b{batch}")
            if reference is not None:
                checks[f"lens b{batch} vs HF, both ablated"] = first_divergence(
                    tokens.to(reference.device), reference, args.prompt
                )
    checks.pop("ablate_outputs", None)

    print(
        f"\n{args.shape} on {args.device} ({args.dtype}), prompt {args.prompt}, "
        f"{args.new_tokens} new tokens; weights {weight_bytes / 1e9:.2f} GB, "
        f"roofline at {args.bandwidth / 1e12:.2f} TB/s"
    )
    print(
        f"{'cache':16s} {'batch':>5s} {'variant':15s} {'decode tok/s':>13s} {'vs plain':>9s} "
        f"{'roofline':>10s} {'of roofline':>11s}"
    )
    for row in rows:
        kv = kv_bytes_per_token(cfg, dtype) * row["batch"] * (args.prompt + args.new_tokens / 2)
        row["roofline_tokens_per_s"] = row["batch"] * args.bandwidth / (weight_bytes + kv)
        plains = {p["cache"]: p for p in rows if p["variant"] == "plain" and p["batch"] == row["batch"]}
        plain = plains.get(row["cache"], plains.get("dynamic"))
        row["ratio_to_plain"] = row["decode_tokens_per_s"] / plain["decode_tokens_per_s"] if plain else None
        share = row["decode_tokens_per_s"] / row["roofline_tokens_per_s"]
        ratio = f"{row['ratio_to_plain']:9.3f}" if row["ratio_to_plain"] else f"{'':9s}"
        print(
            f"{row['cache']:16s} {row['batch']:5d} {row['variant']:15s} {row['decode_tokens_per_s']:13.1f} "
            f"{ratio} {row['roofline_tokens_per_s']:10.0f} {share:11.3f}"
        )
    for name, value in checks.items():
        if "outputs" not in name:
            print(f"check {name}: {value}")

    result = {
        "shape": args.shape,
        "device": torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu",
        "dtype": args.dtype,
        "torch": torch.__version__,
        "transformers": __import__("transformers").__version__,
        "threads": torch.get_num_threads(),
        "interleave": interleave,
        "prompt": args.prompt,
        "new_tokens": args.new_tokens,
        "weight_bytes": weight_bytes,
        "bandwidth": args.bandwidth,
        "rows": rows,
        "checks": checks,
    }
    if os.environ.get("OUT"):
        with open(os.path.join(os.environ["OUT"], f"generate_bench_{args.shape}.json"), "w") as f:
            json.dump(result, f, indent=1, default=str)


if __name__ == "__main__":
    main()
