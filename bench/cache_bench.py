"""Caching throughput and memory against the model's own forward pass, on a random-weight Qwen2.5 shape.

Run on the GPU machine (device tool), from the repository root:
    python bench/cache_bench.py --shape qwen2.5-7b --batch 32 --seq 512 --batches 4
Prints a table; writes the numbers as JSON to $OUT/cache_bench.json when $OUT is set.

FLOPs are counted as 2 x (parameters of the decoder layers' matrices) per token, plus attention's
QK^T and AV products, 4 x seq x d_model per token per layer (full square, not halved for causality);
embedding lookup and the unembedding are excluded (caching stops before the unembedding).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import shapes
import torch


def build(shape: str):
    return shapes.build(shape, "cuda", torch.bfloat16)


def timed(fn, repeats: int) -> list[float]:
    fn()  # warm-up
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        start = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end) / 1000)
    return times


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--shape", default="qwen2.5-7b", choices=sorted(shapes.SHAPES))
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--seq", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--batches",
        type=int,
        default=4,
        help="batches per timed call: caching streams, so the next batch's host work overlaps",
    )
    parser.add_argument("--no-compile", action="store_true", help="skip the compiled forward's MFU")
    parser.add_argument("--peak-tflops", type=float, default=989.0, help="bf16 dense peak used for MFU")
    args = parser.parse_args()

    from misdir import Model, cache_activations

    hf = build(args.shape)
    model = Model(hf=hf, tokenizer=None, spec=f"random {args.shape}")
    cfg = hf.config
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(0, cfg.vocab_size, (args.batch * 10, args.seq), generator=generator)
    one_batch = ids[: args.batch].cuda()
    tokens = args.batch * args.seq

    def plain() -> None:
        with torch.inference_mode():
            hf.model(input_ids=one_batch, use_cache=False)

    def cached(rows: torch.Tensor) -> None:
        cache_activations(model, list(rows), positions="all", reduce="mean", batch_size=args.batch, progress=False)

    mask = torch.ones_like(one_batch)
    positions = torch.arange(args.seq, device="cuda").expand(args.batch, -1)

    def plain_masked() -> None:
        with torch.inference_mode():
            hf.model(input_ids=one_batch, attention_mask=mask, position_ids=positions, use_cache=False)

    from misdir.tokens import encode, pad

    def prepare() -> None:
        encoded = [encode(None, row, "all") for row in ids[: args.batch]]
        pad(encoded, 0).to(torch.device("cuda"))

    stream_batches = [ids[i * args.batch : (i + 1) * args.batch].cuda() for i in range(args.batches)]

    def plain_stream() -> None:
        with torch.inference_mode():
            for batch in stream_batches:
                hf.model(input_ids=batch, use_cache=False)

    plain_s = statistics.median(timed(plain, args.repeats))
    masked_s = statistics.median(timed(plain_masked, args.repeats))
    prepare_s = statistics.median(timed(prepare, args.repeats))
    cache_s = statistics.median(timed(lambda: cached(ids[: args.batch]), args.repeats))
    stream_plain_s = statistics.median(timed(plain_stream, args.repeats))
    stream_cache_s = statistics.median(timed(lambda: cached(ids[: args.batch * args.batches]), args.repeats))
    compiled_s, compiled_diff = None, None
    if not args.no_compile:  # what a compiled forward would buy (misdir does not compile its cache pass)
        compiled = torch.compile(hf.model, dynamic=False)

        def plain_compiled() -> torch.Tensor:
            with torch.inference_mode():
                return compiled(input_ids=one_batch, use_cache=False).last_hidden_state

        compiled_s = statistics.median(timed(plain_compiled, args.repeats))
        with torch.inference_mode():
            eager = hf.model(input_ids=one_batch, use_cache=False).last_hidden_state.float()
            diff = (plain_compiled().float() - eager).norm() / eager.norm()
        compiled_diff = float(diff)

    layer_params = sum(p.numel() for n, p in hf.model.layers.named_parameters() if p.ndim == 2)
    flops_per_token = 2 * layer_params + cfg.num_hidden_layers * 4 * args.seq * cfg.hidden_size
    mfu = flops_per_token * tokens / plain_s / (args.peak_tflops * 1e12)
    compiled_mfu = flops_per_token * tokens / compiled_s / (args.peak_tflops * 1e12) if compiled_s else None

    peaks = {}
    for n_batches in (1, 10):
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        t0 = time.perf_counter()
        cached(ids[: args.batch * n_batches])
        torch.cuda.synchronize()
        peaks[n_batches] = {
            "tokens": tokens * n_batches,
            "peak_over_weights_gib": (torch.cuda.max_memory_allocated() - base) / 2**30,
            "seconds": time.perf_counter() - t0,
        }

    result = {
        "device": torch.cuda.get_device_name(),
        "torch": torch.__version__,
        "transformers": __import__("transformers").__version__,
        "shape": args.shape,
        "batch": args.batch,
        "seq": args.seq,
        "plain_forward_tokens_per_s": tokens / plain_s,
        "cache_mean_all_layers_tokens_per_s": tokens / cache_s,
        "ratio_cache_over_plain": plain_s / cache_s,
        "stream_batches": args.batches,
        "ratio_cache_over_plain_stream": stream_plain_s / stream_cache_s,
        "compiled_forward_mfu": compiled_mfu,
        "compiled_forward_rel_diff": compiled_diff,
        "ratio_plain_with_mask_over_plain": plain_s / masked_s,
        "prepare_batch_seconds": prepare_s,
        "plain_forward_mfu": mfu,
        "flops_per_token": flops_per_token,
        "memory": peaks,
    }
    print(f"{'what':44s} {'value':>12s}")
    print(f"{'plain forward tokens/s':44s} {result['plain_forward_tokens_per_s']:12.0f}")
    print(f"{'cache_activations(mean, all layers) tokens/s':44s} {result['cache_mean_all_layers_tokens_per_s']:12.0f}")
    print(f"{'ratio cache / plain':44s} {result['ratio_cache_over_plain']:12.3f}")
    label = f"ratio cache / plain, {args.batches} batches streamed"
    print(f"{label:44s} {result['ratio_cache_over_plain_stream']:12.3f}")
    print(f"{'ratio plain+mask+positions / plain':44s} {plain_s / masked_s:12.3f}")
    print(f"{'encode + pad + copy one batch, ms':44s} {prepare_s * 1000:12.2f}")
    mfu_label = f"plain forward MFU (of {args.peak_tflops:.0f} TF/s)"
    print(f"{mfu_label:44s} {mfu:12.3f}")
    if compiled_mfu is not None:
        print(f"{'torch.compile(forward) MFU':44s} {compiled_mfu:12.3f}")
        print(f"{'  its relative difference to eager':44s} {compiled_diff:12.2e}")
    for p in peaks.values():
        label = f"peak GiB over weights, {p['tokens']} tokens"
        print(f"{label:44s} {p['peak_over_weights_gib']:12.2f}")
    if os.environ.get("OUT"):
        with open(os.path.join(os.environ["OUT"], "cache_bench.json"), "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
