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

Variants: `plain`; `ablate` (resid_post of every layer, 28 hooks); `ablate3` (resid_pre+mid+post of every
layer by site-by-site hooks, method="hooks"); `ablate3w` (the same edit by projecting the writers' outputs,
method="writers", what `ablate` picks by default); `orthogonalized` (the same edit in the weights); `lens`.
The ablated direction is the stream's own mean direction at the middle layer (over the prompts), so the edit
moves the logits far more than bf16 rounding does.

Roofline: one decode step must read every weight once and the whole KV cache; at the device's bandwidth
(read from its name: H200 4.8 TB/s, H100 3.35 TB/s; `--bandwidth` overrides) that bounds steps/s, and
tokens/s = batch x steps/s. Checks (teacher-forced logits, not greedy tokens: on random bf16 weights greedy
paths part at near-ties whatever the edit): each variant, in the very decoding it was timed with (compiled
graph included), is fed `--check-tokens` fixed tokens after the prompt; its logits at those steps are held
against a float32 eager run of the same edit (max |diff| / max |reference|, "tf_maxrel"), beside the edit's
own effect (the same measure between the float32 edited and plain references). An edit's check passes when
its difference to its own reference is under half its difference to plain's: if hooks were ignored by a compiled
graph, the logits would sit at plain's and the check fails (plain passes under a quarter of the strongest edit's
effect). The H200 run of 2026-11-29 used "under a quarter of the edit's effect", which failed the one-site
`ablate` on bf16 rounding alone (0.059 against an effect of 0.177, plain itself 0.062). Under a compiled cache the
hazard is checked directly: a graph
compiled without hooks, then `ablate` opened on top of it, and plain again after the block.
Writes JSON to $OUT/generate_bench_{shape}.json when $OUT is set.
"""

from __future__ import annotations

import argparse
import copy
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
VARIANTS = ("plain", "ablate", "ablate3", "ablate3w", "orthogonalized", "lens")
REFERENCE_EDIT = {
    "plain": "plain",
    "ablate": "ablate",
    "ablate3": "ablate3",
    "ablate3w": "ablate3",
    "orthogonalized": "ablate3",
    "lens": "ablate",
}
"""The float32 eager edit each variant must reproduce."""
BANDWIDTH = {"H200": 4.8e12, "H100": 3.35e12, "A100": 2.0e12}
"""Device memory bandwidth (bytes/s) by GPU name, from the vendors' specs (SXM parts)."""


def device_bandwidth(device: str) -> tuple[float, str]:
    """(bytes/s for the roofline, the device's name) read from the device."""
    if not device.startswith("cuda"):
        return 1e11, "cpu (nominal 100 GB/s)"
    name = torch.cuda.get_device_name()
    for key, value in BANDWIDTH.items():
        if key in name:
            return value, name
    return 3.35e12, f"{name} (not in the table: the H100's 3.35 TB/s used)"


def edit(variant: str, model, r):
    """The context a variant runs in (the orthogonalized copy and plain need none)."""
    from misdir import ablate

    if variant == "ablate" or variant == "lens":
        return ablate(model, r)
    if variant == "ablate3":
        return ablate(model, r, site=RESID, method="hooks")
    if variant == "ablate3w":
        return ablate(model, r, site=RESID, method="writers")
    return nullcontext()


def strong_direction(model, ids: torch.Tensor) -> torch.Tensor:
    """The unit mean direction of the residual stream at the middle layer over `ids` (float32, CPU)."""
    with torch.inference_mode():
        hidden = model.hf.model(input_ids=ids, output_hidden_states=True).hidden_states[model.n_layers // 2]
    mean = hidden.float().mean(dim=(0, 1)).cpu()
    return mean / mean.norm()


def teacher_forced(run_options: dict, hf, ids: torch.Tensor, forced: torch.Tensor) -> torch.Tensor:
    """Logits [batch, k, vocab] (float32) of `generate` at each of k steps fed the tokens `forced` [batch, k],
    in the decoding `run_options` selects (so a compiled decode step is what is checked)."""
    from transformers import GenerationConfig, LogitsProcessorList

    step = {"i": 0}

    def force(input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        out = torch.full_like(scores, -float("inf"))
        out[torch.arange(scores.shape[0]), forced[:, step["i"]].to(scores.device)] = 0
        step["i"] += 1
        return out

    k = forced.shape[1]
    config = GenerationConfig(
        do_sample=False,
        max_new_tokens=k,
        min_new_tokens=k,
        pad_token_id=0,
        eos_token_id=None,
        output_logits=True,
        return_dict_in_generate=True,
        **run_options,
    )
    with torch.inference_mode():
        out = hf.generate(
            input_ids=ids,
            attention_mask=torch.ones_like(ids),
            generation_config=config,
            logits_processor=LogitsProcessorList([force]),
        )
    return torch.stack(out.logits, 1).float()


def reference_logits(reference, r, ids: torch.Tensor, forced: torch.Tensor, which: str) -> torch.Tensor:
    """Float32 eager logits of the edit `which` over prompt + forced tokens, at the forced steps."""
    device = next(reference.hf.parameters()).device
    full = torch.cat([ids, forced], 1).to(device)
    with edit(which, reference, r), torch.inference_mode():
        logits = reference.hf(input_ids=full, logits_to_keep=forced.shape[1] + 1).logits[:, :-1]
    return logits.float()


def max_relative(a: torch.Tensor, b: torch.Tensor) -> float:
    """max |a - b| / max |b|."""
    b = b.to(a.device)
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-30))


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


def hf_generator(model, cache: str, max_cache_len: int) -> Callable[[torch.Tensor, int], torch.Tensor]:
    from transformers import GenerationConfig

    options = run_options(cache, max_cache_len)

    def run(ids: torch.Tensor, n: int) -> torch.Tensor:
        config = GenerationConfig(
            do_sample=False, max_new_tokens=n, min_new_tokens=n, pad_token_id=0, eos_token_id=None, **options
        )
        with torch.inference_mode():
            return model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), generation_config=config)

    return run


def run_options(cache: str, max_cache_len: int) -> dict:
    """GenerationConfig fields of a cache kind."""
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
    return options


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
    check: Callable[[str], dict] | None = None,
    time_left: Callable[[], float] = lambda: float("inf"),
) -> tuple[dict[str, dict[str, float]], dict[str, dict]]:
    """Per job (a generate function and the context it runs in): median times of a one-token and a
    `new`-token generation and the decode rate from their difference; and `check(name)`, run inside the
    job's context after its timings (so in the same compiled graph). Interleaved, each repeat runs every job
    in turn (fair under a fluctuating load; enters each context once per repeat); otherwise each job runs all
    its repeats inside one context, after `fresh()` (for a compiled decode step: a compilation of its own,
    with its hooks in it). A job is skipped when `time_left()` is under a minute before it starts."""
    samples: dict[str, list[tuple[float, float]]] = {name: [] for name in jobs}
    checks: dict[str, dict] = {}

    def once(run: Callable) -> tuple[float, float]:
        return seconds(lambda: run(ids, 1), device), seconds(lambda: run(ids, new), device)

    if interleave:
        for run, context in jobs.values():  # warm-up
            with context():
                run(ids, new)
        for i in range(repeats):
            for name, (run, context) in jobs.items():
                with context():
                    samples[name].append(once(run))
                    if check is not None and i == repeats - 1:
                        checks[name] = check(name)
    else:
        for name, (run, context) in jobs.items():
            if time_left() < 60:
                print(f"  [{stamp()}] skipped {name}: {time_left():.0f} s left", flush=True)
                continue
            if fresh is not None:
                fresh()
            t0 = time.perf_counter()
            with context():
                run(ids, new)  # warm-up (and compilation)
                warm = time.perf_counter() - t0
                samples[name] = [once(run) for _ in range(repeats)]
                if check is not None:
                    checks[name] = check(name)
            checks.setdefault(name, {})["warm_up_seconds"] = warm
    batch, out = ids.shape[0], {}
    for name, pairs in samples.items():
        if not pairs:
            continue
        one = statistics.median(p[0] for p in pairs)
        full = statistics.median(p[1] for p in pairs)
        out[name] = {
            "seconds": full,
            "prefill_seconds": one,
            "decode_tokens_per_s": batch * (new - 1) / max(full - one, 1e-9),
            "tokens_per_s": batch * new / full,
        }
    return out, checks


def stamp() -> str:
    return time.strftime("%H:%M:%S")


def fresh_compilation(*models) -> None:
    """Forget every compiled decode step, so that each variant compiles its own graph with its hooks in it."""
    torch._dynamo.reset()
    for model in models:
        if model is not None and hasattr(model.hf, "_compiled_call"):
            del model.hf._compiled_call


class Bench:
    """One model, its orthogonalized copy and float32 reference, prompts and forced tokens per batch size."""

    def __init__(self, args: argparse.Namespace, model=None, folder=None):
        import copy

        from misdir import Model, orthogonalize

        self.args = args
        self.model, self.folder = (model, folder) if model is not None else load(args)
        self.dtype = getattr(torch, args.dtype)
        cfg = self.model.config
        generator = torch.Generator().manual_seed(0)
        self.prompts = {
            b: torch.randint(5, cfg.vocab_size, (b, args.prompt), generator=generator).to(args.device)
            for b in args.batches
        }
        self.forced = {
            b: torch.randint(5, cfg.vocab_size, (b, args.check_tokens), generator=generator).to(args.device)
            for b in args.batches
        }
        self.r = strong_direction(self.model, self.prompts[max(args.batches)][:8])
        self.ortho = orthogonalize(self.model, self.r) if "orthogonalized" in args.variants else None
        wide = copy.deepcopy(self.model.hf).float()  # the float32 eager reference of every edit
        self.reference = Model(hf=wide, tokenizer=self.model.tokenizer, spec=self.model.spec + " (float32)")
        self.references: dict[tuple[int, str], torch.Tensor] = {}
        self.weight_bytes = shapes.parameter_bytes(self.model.hf)
        self.max_cache_len = args.prompt + args.new_tokens
        self.bandwidth, self.device_name = device_bandwidth(args.device)
        if args.bandwidth:
            self.bandwidth = args.bandwidth
        self.rows: list[dict] = []
        self.checks: dict[str, dict] = {}

    def ref(self, batch: int, which: str) -> torch.Tensor:
        key = (batch, which)
        if key not in self.references:
            self.references[key] = reference_logits(
                self.reference, self.r, self.prompts[batch], self.forced[batch], which
            )
        return self.references[key]

    def effect(self, batch: int, which: str) -> float:
        """How far the edit moves the float32 logits (0 for plain)."""
        return 0.0 if which == "plain" else max_relative(self.ref(batch, which), self.ref(batch, "plain"))

    def judge(self, batch: int, logits: torch.Tensor, which: str) -> dict:
        """A teacher-forced check: logits against the float32 reference of `which` and of plain."""
        bar = self.effect(batch, "ablate3") / 4  # the strongest edit's effect sets the bar for plain
        effect = self.effect(batch, which)
        out = {
            "reference": which,
            "tf_maxrel": max_relative(logits, self.ref(batch, which)),
            "tf_maxrel_vs_plain": max_relative(logits, self.ref(batch, "plain")),
            "edit_effect": effect,
        }
        # An edit passes when its logits sit clearly nearer its own float32 reference than plain's (ignored hooks
        # would put them at plain's); a fixed share of the effect fails one-site edits on bf16 rounding alone.
        out["ok"] = out["tf_maxrel"] < (out["tf_maxrel_vs_plain"] / 2 if which != "plain" else bar)
        return out

    def measure(self, cache: str, time_left: Callable[[], float] = lambda: float("inf")) -> None:
        """Decode rates and teacher-forced checks of every variant at every batch size, under one cache kind."""
        args = self.args
        interleave = args.interleave if args.interleave is not None else not args.device.startswith("cuda")
        compiled = cache == "static-compiled" or (cache == "static" and args.device.startswith("cuda"))
        if compiled:
            interleave = False
        for batch, ids in self.prompts.items():
            jobs, targets = {}, {}
            for variant in [v for v in args.variants if v != "lens"]:
                target = self.ortho if variant == "orthogonalized" else self.model
                targets[variant] = target
                jobs[variant] = (
                    hf_generator(target.hf, cache, self.max_cache_len),
                    partial(edit, variant, target, self.r),
                )
            options = run_options(cache, self.max_cache_len)

            def check(name: str, batch=batch, ids=ids, targets=targets, options=options) -> dict:
                logits = teacher_forced(options, targets[name].hf, ids, self.forced[batch])
                return self.judge(batch, logits, REFERENCE_EDIT[name])

            fresh = partial(fresh_compilation, self.model, self.ortho) if compiled else None
            print(f"[{stamp()}] {cache} batch {batch}: {', '.join(jobs)}", flush=True)
            results, checks = decode_rates(
                jobs, ids, args.new_tokens, args.repeats, args.device, interleave, fresh, check, time_left
            )
            for variant, result in results.items():
                self.rows.append(
                    {"cache": cache, "batch": batch, "variant": variant, **result, "check": checks.get(variant)}
                )
                print(
                    f"  {variant:15s} {result['decode_tokens_per_s']:10.1f} tok/s  check {checks.get(variant)}",
                    flush=True,
                )
            if compiled and batch == max(self.prompts) and time_left() > 90:
                self.hazard(cache, batch, ids, options)

    def hazard(self, cache: str, batch: int, ids: torch.Tensor, options: dict) -> None:
        """A graph compiled without hooks, then the default ablation opened on top of it; plain after it."""
        from misdir import ablate

        fresh_compilation(self.model, self.ortho)
        hf, forced = self.model.hf, self.forced[batch]
        teacher_forced(options, hf, ids, forced)  # compiles the hook-free graph
        with ablate(self.model, self.r, site=RESID):  # the default method (writers)
            late = teacher_forced(options, hf, ids, forced)
        after = teacher_forced(options, hf, ids, forced)
        self.checks[f"{cache} b{batch} ablate3 opened on a hook-free compiled graph"] = self.judge(
            batch, late, "ablate3"
        )
        self.checks[f"{cache} b{batch} plain after the hooked block"] = self.judge(batch, after, "plain")
        for name in list(self.checks)[-2:]:
            print(f"  check {name}: {self.checks[name]}", flush=True)

    def lens(self) -> None:
        """TransformerBridge.generate under the same `ablate`, and its teacher-forced logits (skipped without
        transformer_lens)."""
        try:
            from transformer_lens.model_bridge import TransformerBridge
        except ImportError as error:
            self.checks["lens"] = {"skipped": f"transformer_lens not importable: {error}"}
            print(f"[{stamp()}] lens skipped: {error}", flush=True)
            return
        from misdir import ablate

        args = self.args
        self.ortho = None
        # boot_transformers wraps the model it is given in place: on the bench's own model, every later part
        # timed the bridge (issue 28: misdir.generate 3x slower). The bridge gets a copy.
        bridge = TransformerBridge.boot_transformers(
            self.folder,
            hf_model=copy.deepcopy(self.model.hf),
            tokenizer=self.model.tokenizer,
            device=args.device,
            dtype=self.dtype,
        )
        for batch, ids in self.prompts.items():
            jobs = {"lens": (lens_generator(bridge), partial(ablate, bridge, self.r))}
            results, _ = decode_rates(jobs, ids, args.new_tokens, args.repeats, args.device, False)
            with ablate(bridge, self.r), torch.inference_mode():
                full = torch.cat([ids, self.forced[batch]], 1)
                logits = bridge(full)[:, ids.shape[1] - 1 : -1].float()
            self.rows.append(
                {
                    "cache": "lens (its own)",
                    "batch": batch,
                    "variant": "lens",
                    **results["lens"],
                    "check": self.judge(batch, logits, "ablate"),
                }
            )

    def report(self, name: str | None = None) -> dict:
        args, cfg = self.args, self.model.config
        print(
            f"\n{args.shape} on {self.device_name} ({args.dtype}), prompt {args.prompt}, "
            f"{args.new_tokens} new tokens; weights {self.weight_bytes / 1e9:.2f} GB, "
            f"roofline at {self.bandwidth / 1e12:.2f} TB/s"
        )
        print(
            f"{'cache':16s} {'batch':>5s} {'variant':15s} {'decode tok/s':>13s} {'vs plain':>9s} "
            f"{'roofline':>10s} {'of roofline':>11s} {'tf maxrel':>10s} {'effect':>8s} {'ok':>3s}"
        )
        from misdir.batching import kv_cache_bytes

        for row in self.rows:
            kv = kv_cache_bytes(cfg, 1, self.dtype) * row["batch"] * (args.prompt + args.new_tokens / 2)
            row["roofline_tokens_per_s"] = row["batch"] * self.bandwidth / (self.weight_bytes + kv)
            plains = {p["cache"]: p for p in self.rows if p["variant"] == "plain" and p["batch"] == row["batch"]}
            plain = plains.get(row["cache"], plains.get("dynamic"))
            row["ratio_to_plain"] = row["decode_tokens_per_s"] / plain["decode_tokens_per_s"] if plain else None
            share = row["decode_tokens_per_s"] / row["roofline_tokens_per_s"]
            ratio = f"{row['ratio_to_plain']:9.3f}" if row["ratio_to_plain"] else f"{'':9s}"
            c = row.get("check") or {}
            tf = f"{c['tf_maxrel']:10.2e} {c['edit_effect']:8.2e} {'yes' if c['ok'] else 'NO':>3s}" if "ok" in c else ""
            print(
                f"{row['cache']:16s} {row['batch']:5d} {row['variant']:15s} {row['decode_tokens_per_s']:13.1f} "
                f"{ratio} {row['roofline_tokens_per_s']:10.0f} {share:11.3f} {tf}"
            )
        for key, value in self.checks.items():
            print(f"check {key}: {value}")
        result = {
            "shape": args.shape,
            "device": self.device_name,
            "dtype": args.dtype,
            "torch": torch.__version__,
            "transformers": __import__("transformers").__version__,
            "threads": torch.get_num_threads(),
            "prompt": args.prompt,
            "new_tokens": args.new_tokens,
            "check_tokens": args.check_tokens,
            "weight_bytes": self.weight_bytes,
            "bandwidth": self.bandwidth,
            "rows": self.rows,
            "checks": self.checks,
        }
        if os.environ.get("OUT"):
            with open(os.path.join(os.environ["OUT"], name or f"generate_bench_{args.shape}.json"), "w") as f:
                json.dump(result, f, indent=1, default=str)
        return result


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shape", default="tiny", choices=[*sorted(shapes.SHAPES), "embedded"])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default=None, help="default: bfloat16 on CUDA, float32 on CPU")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 64])
    parser.add_argument("--prompt", type=int, default=32, help="prompt tokens per row")
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--check-tokens", type=int, default=8, help="teacher-forced steps checked per variant")
    parser.add_argument(
        "--caches",
        nargs="+",
        default=["dynamic"],
        choices=["dynamic", "static", "static-eager", "static-compiled"],
    )
    parser.add_argument(
        "--variants",
        nargs="+",
        default=["plain", "ablate3w", "ablate", "orthogonalized", "ablate3"],
        choices=VARIANTS,
    )
    parser.add_argument("--lens", action="store_true", help="add the TransformerBridge variant (dynamic cache)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--bandwidth",
        type=float,
        default=None,
        help="bytes/s for the roofline (default: " "the device's, from its name)",
    )
    parser.add_argument(
        "--interleave",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="alternate the variants in each repeat (default: on CPU, where the load fluctuates; never with "
        "a compiled cache)",
    )
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (torch.set_num_threads)")
    return parser


def main() -> None:
    args = parser().parse_args()
    args.dtype = args.dtype or ("bfloat16" if args.device.startswith("cuda") else "float32")
    if args.threads:
        torch.set_num_threads(args.threads)
    lens = args.lens or "lens" in args.variants
    args.variants = [v for v in args.variants if v != "lens"]
    bench = Bench(args)
    for cache in args.caches:
        bench.measure(cache)
    if lens:
        bench.lens()
    bench.report()


if __name__ == "__main__":
    main()
