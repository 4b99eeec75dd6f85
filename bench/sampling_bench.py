"""Sampling throughput of `misdir.generate` at large batch, against the GPU's own limits (issue 26, item 4).

Each variant (`VARIANTS`: attention x sampling noise) at the largest batch, then the default one at the other
batches, in priority order while `--budget` seconds last: `misdir.generate` over `batch` distinct prompts x 1
sample, `--new-tokens` new tokens, temperature 1, its default decoding (static cache, compiled step), once to
compile and once timed, each variant compiling its own step. Attention: "sdpa" (transformers' own: the KV cache
expanded to the query heads in every compiled step), "grouped" (misdir.attention, the default), "grouped-matmul"
(the same layout, softmax written out), "grouped-flex" (the same layout through FlexAttention).
Noise: "row" (a generator per row, one launch per row and step: misdir before issue 26), "counter"
(misdir.generate.gumbel_noise, one compiled kernel, its step counter on the device) or "host-step" (the same
kernel, its step copied from the host at every step, which made the host wait for the GPU: misdir before session 6).
Stop check: "every step" (the host waits for the GPU after each step to learn whether all rows have finished: the
default) or "one step late" (`stop_check_one_step_late`).
Then the default under the three-site ablation, the compiled noise against the CPU's, a torch.profiler breakdown
of one call, and the teacher-forced logits of sdpa and the default against a float32 eager reference
(bench/generate_bench.py's check). The two ceilings (a bf16 matrix product, a device copy) are measured first, in
the same process, and every rate is given as a share of them.

    python bench/sampling_bench.py --shape qwen2.5-7b --device cuda          # on the device tool
    python bench/sampling_bench.py --shape tiny --device cpu --batches 4 --new-tokens 8 --no-profile   # smoke
JSON lands in $OUT (or .): one file per part, written as soon as it ends.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import importlib
import json
import os
import time
from contextlib import nullcontext
from pathlib import Path

import generate_bench as gb
import shapes
import torch

from misdir import Model, ablate, generate
from misdir.attention import grouped_attention
from misdir.batching import kv_cache_bytes

attention_module = importlib.import_module("misdir.attention")
generate_module = importlib.import_module("misdir.generate")  # `misdir.generate` is also the function's name
COUNTER_NOISE = generate_module._GumbelNoise

START = time.monotonic()


def log(message: str) -> None:
    print(f"[+{time.monotonic() - START:5.0f}s] {message}", flush=True)


def write(name: str, result: dict) -> None:
    out = Path(os.environ.get("OUT", "."))
    out.mkdir(parents=True, exist_ok=True)
    (out / name).write_text(json.dumps(result, indent=1, default=str))


def ceilings(device: str) -> dict:
    """Measured bf16 matrix-product rate (flop/s) and device-copy bandwidth (bytes read + written per s)."""
    if not device.startswith("cuda"):
        return {"matmul_flops": 1e12, "copy_bytes_per_s": 1e11, "note": "nominal (CPU)"}
    n = 8192
    a, b = (
        torch.randn(n, n, device=device, dtype=torch.bfloat16),
        torch.randn(n, n, device=device, dtype=torch.bfloat16),
    )
    src = torch.randn(1 << 28, device=device)  # 1 GiB
    dst = torch.empty_like(src)

    def best(fn, repeats: int = 20) -> float:
        fn()
        times = []
        for _ in range(repeats):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            torch.cuda.synchronize()
            times.append(start.elapsed_time(end) / 1e3)
        return sorted(times)[len(times) // 2]

    flops = 2 * n**3 / best(lambda: a @ b)
    bandwidth = 2 * src.numel() * 4 / best(lambda: dst.copy_(src))
    return {"matmul_flops": flops, "copy_bytes_per_s": bandwidth, "gpu": torch.cuda.get_device_name()}


class RowGumbel:
    """misdir's sampling noise before issue 26: a torch.Generator per row, one `torch.rand` launch per row and step
    (the same distribution; other numbers)."""

    def __init__(self, seeds: list[int]):
        self.seeds, self.generators = seeds, []

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        if not self.generators:
            self.generators = [torch.Generator(device=scores.device).manual_seed(s) for s in self.seeds]
        uniform = torch.stack(
            [torch.rand(scores.shape[-1], generator=g, device=scores.device) for g in self.generators]
        )
        return scores.float() - torch.log(-torch.log(uniform.clamp_(min=1e-10, max=1 - 1e-7)))


class HostStepGumbel(COUNTER_NOISE):
    """misdir's counter noise before 2026-12-07 (session 6): the same numbers, its step made from a Python int at
    every call, a blocking host-to-device copy, so the host waited for the GPU at every decode step."""

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        if self.keys is None:
            self.keys = torch.tensor(self.seeds, dtype=torch.int64, device=scores.device)
            self.host_step = 0
        step = torch.tensor(self.host_step, dtype=torch.int64, device=scores.device)
        self.host_step += 1
        return scores.float() + generate_module._noise_kernel(scores.device)(self.keys, step, scores.shape[-1])


def grouped_matmul(module, query, key, value, attention_mask, dropout=0.0, scaling=None, is_causal=None, **kwargs):
    """misdir.attention's grouped layout with the softmax written out (two batched products) instead of SDPA."""
    groups = getattr(module, "num_key_value_groups", 1)
    batch, heads, q_len, dim = query.shape
    if q_len != 1 or groups == 1 or attention_mask is None:
        return SDPA_GROUPED(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, is_causal=is_causal, **kwargs
        )
    rows = query.reshape(batch, heads // groups, groups, dim)
    scores = torch.matmul(rows, key.transpose(-1, -2)).float() * (scaling or dim**-0.5)
    if attention_mask.dtype == torch.bool:
        scores = scores.masked_fill(~attention_mask, float("-inf"))
    else:
        scores = scores + attention_mask
    out = torch.matmul(scores.softmax(-1).to(value.dtype), value)
    return out.reshape(batch, 1, heads, value.shape[-1]), None


def grouped_flex(module, query, key, value, attention_mask, dropout=0.0, scaling=None, is_causal=None, **kwargs):
    """Decoding steps through FlexAttention (`enable_gqa`; the left-padding mask as a score modification), which
    the compiler lowers to one Triton kernel; every other call to misdir.attention's grouped SDPA."""
    from torch.nn.attention.flex_attention import flex_attention

    if query.shape[2] != 1 or attention_mask is None or attention_mask.shape[1] != 1:
        return SDPA_GROUPED(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, is_causal=is_causal, **kwargs
        )
    mask = attention_mask[:, 0, 0]  # [batch, kv]: bool (keep) or additive

    def score_mod(score, b, h, q, kv):
        if mask.dtype == torch.bool:
            return torch.where(mask[b, kv], score, -float("inf"))
        return score + mask[b, kv]

    out = flex_attention(query, key, value, score_mod=score_mod, scale=scaling, enable_gqa=True)
    return out.transpose(1, 2), None


SDPA_GROUPED = attention_module.grouped_sdpa
VARIANTS = {  # name: (attention, sampling noise, when the host learns that every row has finished)
    "sdpa+row-noise": ("sdpa", "row", "every step"),
    "grouped+row-noise": ("grouped", "row", "every step"),
    "grouped": ("grouped", "counter", "every step"),
    "grouped-late": ("grouped", "counter", "one step late"),
    "grouped+host-step": ("grouped", "host-step", "every step"),
    "grouped-late+host-step": ("grouped", "host-step", "one step late"),
    "grouped-matmul": ("grouped-matmul", "counter", "every step"),
    "grouped-flex": ("grouped-flex", "counter", "every step"),
    "sdpa": ("sdpa", "counter", "every step"),
}


def variant(name: str, model: Model) -> None:
    """Make `misdir.generate` decode with the named attention, noise and stop check (the bench's only patches of
    misdir), and forget every compiled step so that the variant compiles its own."""
    attention, noise, stop_check = VARIANTS[name]
    generate_module.grouped_attention = (lambda hf: nullcontext(False)) if attention == "sdpa" else grouped_attention
    kernels = {"grouped-matmul": grouped_matmul, "grouped-flex": grouped_flex}
    attention_module.grouped_sdpa = kernels.get(attention, SDPA_GROUPED)
    generate_module._GumbelNoise = {"row": RowGumbel, "host-step": HostStepGumbel}.get(noise, COUNTER_NOISE)
    generate_module.DEFERRED_STOP_DEVICES = ("cuda",) if stop_check == "one step late" else ()
    gb.fresh_compilation(model)


def timed(model: Model, questions: list, device: str, **settings) -> tuple[float, object]:
    shapes.synchronize(device)
    t0 = time.perf_counter()
    answers = generate(model, questions, progress=False, **settings)
    shapes.synchronize(device)
    return time.perf_counter() - t0, answers


def limits(model: Model, batch: int, context: int, ceiling: dict) -> dict:
    """Per decode step: the matrix-product floor (2 x parameters x batch flop at the measured rate) and the memory
    floor (weights once + the whole KV cache of `context` tokens a row, at the measured copy bandwidth)."""
    params = sum(p.numel() for p in model.hf.parameters())
    weight_bytes = shapes.parameter_bytes(model.hf)
    kv = kv_cache_bytes(model.hf.config, 1, next(model.hf.parameters()).dtype) * context * batch
    return {
        "compute_s": 2 * params * batch / ceiling["matmul_flops"],
        "memory_s": (weight_bytes + kv) / ceiling["copy_bytes_per_s"],
    }


def sampling_row(model: Model, questions: list, args, ceiling: dict, edit=None, batch_size=None) -> dict:
    """One call's tokens per second (after a warm-up call), at `batch_size` (default: all questions in one batch;
    "auto": the batch `misdir.generate` picks, recorded in the row)."""
    batch_size = batch_size or len(questions)
    settings = dict(max_new_tokens=args.new_tokens, batch_size=batch_size, temperature=1.0, seed=0)
    with edit if edit is not None else nullcontext():
        warm, _ = timed(model, questions, args.device, **settings)
        seconds, answers = timed(model, questions, args.device, **settings)
        checked = same_answers_checked_every_step(model, questions, args.device, settings, answers)
    batch = answers.provenance["settings"]["batch_size"]
    batches = -(-len(questions) // batch)
    tokens = sum(a.n_tokens for a in answers)
    steps = args.new_tokens if not all(a.finished for a in answers) else max(a.n_tokens for a in answers) + 1
    steps *= batches  # decode steps of the call (a batch runs to its longest answer; these run to the limit)
    prompt = max(len(model.tokenizer(q[1])["input_ids"]) for q in questions) + 4
    floor = limits(model, batch, prompt + args.new_tokens // 2, ceiling)
    step_s = seconds / max(steps, 1)
    return {
        "batch": batch,
        "batch_size_requested": batch_size,
        "questions": len(questions),
        "seconds": seconds,
        "warm_up_seconds": warm,
        "tokens": tokens,
        "tokens_per_s": tokens / seconds,
        "steps_per_s": steps / seconds,
        "share_of_compute_limit": floor["compute_s"] / step_s,
        "share_of_memory_limit": floor["memory_s"] / step_s,
        "decoding": answers.provenance["decoding"],
        "answers_sha256": digest(answers),
    } | checked


def digest(answers) -> str:
    return hashlib.sha256(json.dumps([a.answer for a in answers]).encode()).hexdigest()[:16]


def same_answers_checked_every_step(model: Model, questions: list, device: str, settings: dict, answers) -> dict:
    """For a call that learned one step late that every row had finished: the digest of the same call through the
    same compiled step with the check made at every step (equal digests: the deferred check changed no token)."""
    if answers.provenance["decoding"].get("stop_check") != "one step late":
        return {}
    deferred = generate_module.DEFERRED_STOP_DEVICES
    generate_module.DEFERRED_STOP_DEVICES = ()
    try:
        _, every_step = timed(model, questions, device, **settings)
    finally:
        generate_module.DEFERRED_STOP_DEVICES = deferred
    return {"answers_sha256_stop_checked_every_step": digest(every_step)}


def logits_check(model: Model, reference: Model, r: torch.Tensor, args, name: str) -> dict:
    """Teacher-forced logits of the compiled static decode (attention `name`) against float32 eager ones."""
    g = torch.Generator().manual_seed(5)
    vocab = model.hf.config.vocab_size
    ids = torch.randint(5, vocab, (8, 24), generator=g).to(args.device)
    forced = torch.randint(5, vocab, (8, args.check_tokens), generator=g).to(args.device)
    options = gb.run_options("static", ids.shape[1] + args.check_tokens)
    out = {}
    for which in ("plain", "ablate3"):
        variant(name, model)
        with gb.edit(which, model, r), generate_module.grouped_attention(model.hf):
            got = gb.teacher_forced(options, model.hf, ids, forced)
        ref = gb.reference_logits(reference, r, ids, forced, which)
        out[which] = gb.max_relative(got, ref)
    out["edit_effect"] = gb.max_relative(
        gb.reference_logits(reference, r, ids, forced, "ablate3"),
        gb.reference_logits(reference, r, ids, forced, "plain"),
    )
    return out


def profile(model: Model, questions: list, args) -> dict:
    """GPU time by kernel over one (already compiled) grouped call: the top kernels and their shares."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    settings = dict(max_new_tokens=args.new_tokens, batch_size=len(questions), temperature=1.0, seed=0)
    generate(model, questions, progress=False, **settings)  # compiles
    with torch_profile(activities=[ProfilerActivity.CUDA]) as prof:
        wall, _ = timed(model, questions, args.device, **settings)
    events = [e for e in prof.key_averages() if e.device_time_total > 0]
    total = sum(e.self_device_time_total for e in events)
    top = sorted(events, key=lambda e: -e.self_device_time_total)[:20]
    return {
        "total_gpu_ms": total / 1e3,
        "wall_ms": wall * 1e3,
        "gpu_busy_share": total / 1e3 / (wall * 1e3),  # kernel time over wall time (kernels may overlap)
        "kernels": [
            {
                "name": e.key[:120],
                "share": e.self_device_time_total / total,
                "calls": e.count,
                "us_per_call": e.self_device_time_total / max(e.count, 1),
            }
            for e in top
        ],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shape", default="tiny", choices=sorted(shapes.SHAPES))
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batches", type=int, nargs="+", default=[512, 200, 64])
    parser.add_argument(
        "--variants",
        nargs="+",
        default=list(VARIANTS),
        choices=list(VARIANTS),
        help="timed at the largest batch, in this order (each compiles its own step)",
    )
    parser.add_argument(
        "--default",
        default="grouped",
        choices=list(VARIANTS),
        help="the variant timed at the " "other batches, under the ablation and in the profile",
    )
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--auto", type=int, default=0, help="also time this many prompts at batch_size='auto'")
    parser.add_argument("--check-tokens", type=int, default=8)
    parser.add_argument("--budget", type=float, default=540, help="seconds; a part starts only if it can end")
    parser.add_argument("--profile", action=argparse.BooleanOptionalAction, default=True)
    args = parser.parse_args()
    torch._dynamo.config.recompile_limit = 64
    torch._dynamo.config.cache_size_limit = 64
    left = lambda: args.budget - (time.monotonic() - START)  # noqa: E731

    dtype = torch.bfloat16 if args.device.startswith("cuda") else torch.float32
    ceiling = ceilings(args.device)
    log(f"ceilings: {ceiling}")
    write("ceilings.json", ceiling)
    hf = shapes.build(args.shape, args.device, dtype)
    model = Model(hf=hf, tokenizer=shapes.stand_in_tokenizer(hf.config.vocab_size), spec=f"random {args.shape}")
    log(f"built {args.shape}: {shapes.parameter_bytes(hf) / 1e9:.2f} GB")
    g = torch.Generator().manual_seed(3)
    prompts = {b: [(f"q{i}", shapes.words(g, hf.config.vocab_size, 24)) for i in range(b)] for b in args.batches}
    r = gb.strong_direction(model, torch.randint(5, hf.config.vocab_size, (4, 64), generator=g).to(args.device))

    rows: dict = {}
    big = max(args.batches)
    order = [(v, big) for v in args.variants] + [(args.default, b) for b in args.batches if b != big]
    for name, batch in order:
        if left() < 90 and rows:
            log(f"skipped {name} batch {batch}: {left():.0f} s left")
            continue
        variant(name, model)
        try:
            rows[f"{name} {batch}"] = row = sampling_row(model, prompts[batch], args, ceiling)
        except Exception as error:  # a variant that does not compile here is a result, not the end of the run
            rows[f"{name} {batch}"] = {"error": repr(error)[:2000]}
            log(f"{name} batch {batch} failed: {error!r:.300}")
            write("sampling.json", rows)
            if name == args.default:
                args.default = "grouped"
                log("the default for the other parts falls back to grouped")
            continue
        log(
            f"{name} batch {batch}: {row['tokens_per_s']:,.0f} tok/s, {row['steps_per_s']:.1f} steps/s, "
            f"compute {row['share_of_compute_limit']:.2f}, memory {row['share_of_memory_limit']:.2f} "
            f"(compile {row['warm_up_seconds']:.0f} s)"
        )
        write("sampling.json", rows)
    if left() > 90:
        variant(args.default, model)
        rows[f"{args.default} {big} ablate3"] = row = sampling_row(
            model, prompts[big], args, ceiling, ablate(model, r, site=gb.RESID)
        )
        row["ratio_to_plain"] = row["tokens_per_s"] / rows[f"{args.default} {big}"]["tokens_per_s"]
        log(
            f"{args.default} batch {big} under the three-site ablation: {row['tokens_per_s']:,.0f} tok/s "
            f"({row['ratio_to_plain']:.3f} of plain)"
        )
        write("sampling.json", rows)
    if args.auto and left() > 90:
        variant(args.default, model)
        many = [(f"a{i}", shapes.words(g, hf.config.vocab_size, 24)) for i in range(args.auto)]
        rows[f"{args.default} auto"] = row = sampling_row(model, many, args, ceiling, batch_size="auto")
        log(f"{args.default}, {args.auto} prompts at batch 'auto' ({row['batch']}): {row['tokens_per_s']:,.0f} tok/s")
        write("sampling.json", rows)
    if args.device.startswith("cuda") and left() > 30:  # the compiled noise on the GPU equals the CPU's
        keys = torch.randint(-(2**63), 2**63 - 1, (64,), dtype=torch.int64)
        step = torch.tensor(9)
        cpu = generate_module.gumbel_noise(keys, step, hf.config.vocab_size)
        gpu = generate_module._noise_kernel(torch.device(args.device))(
            keys.to(args.device), step.to(args.device), hf.config.vocab_size
        ).cpu()
        write("noise.json", noise := {"max_abs_diff_cpu_vs_compiled_cuda": float((cpu - gpu).abs().max())})
        log(f"counter noise, CPU eager vs CUDA compiled: {noise}")
    if args.profile and left() > 60:
        variant(args.default, model)
        write("profile.json", prof := profile(model, prompts[big], args))
        log(
            f"profile: {prof['total_gpu_ms']:.0f} ms of kernels in {prof['wall_ms']:.0f} ms of wall time "
            f"({prof['gpu_busy_share']:.2f})"
        )
        for k in prof["kernels"][:12]:
            log(f"  {k['share']:.3f}  {k['us_per_call']:8.1f} us x {k['calls']:6d}  {k['name']}")
    if left() > 90:
        reference = copy.deepcopy(model)
        reference.hf.float()
        checks = {name: logits_check(model, reference, r, args, name) for name in ("sdpa", args.default)}
        log(f"teacher-forced max relative difference to float32 eager: {checks}")
        write("logits.json", checks)
    for name, row in rows.items():
        if "error" in row:
            print(f"| {name} | failed: {row['error'][:120]} |")
            continue
        print(
            f"| {name} | {row['tokens_per_s']:,.0f} | {row['steps_per_s']:.1f} | "
            f"{row['share_of_compute_limit']:.2f} | {row['share_of_memory_limit']:.2f} |"
        )


if __name__ == "__main__":
    main()
