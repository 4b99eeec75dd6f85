"""Data-parallel caching and evaluation with misdir.distributed: 1 rank against N ranks, side by side.

GPU (device tool, kind nvidia-h200-x2), random-weight Qwen2.5-7B shape in bf16, one process per GPU (NCCL):
    python bench/distributed_bench.py --shape qwen2.5-7b --ranks 1 2
CPU smoke run (gloo):
    python bench/distributed_bench.py --shape tiny --ranks 1 2 --inputs 16 --seq 32 --pairs 16 \
        --questions 8 --new-tokens 8

The script starts `torchrun --nproc-per-node N` on itself for each N in `--ranks`. Every rank builds the
same random model (rank 0's weights are broadcast) and runs, timed: `cache_activations(reduce="mean")` over
`--inputs` random sequences of `--seq` tokens at every layer; `contrast_logprobs` over `--pairs` made-up
contrast pairs; `generate` of `--new-tokens` sampled tokens for `--questions` x `--samples` answers.
Printed: each figure per N, the speed-up over one rank, and whether N ranks gave what one rank gave
(cache means to float32/bf16 rounding of batch make-up, contrast items likewise, answers token for token).
Writes JSON to $OUT/distributed_bench.json when $OUT is set.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import shapes
import torch


def worker(args: argparse.Namespace) -> None:
    import torch.distributed as dist

    from misdir import Model, distributed
    from misdir.questions import ContrastPair

    ranks = distributed.init()
    device = str(ranks.device)
    dtype = getattr(torch, args.dtype or ("bfloat16" if device.startswith("cuda") else "float32"))
    hf = shapes.build(args.shape, device, dtype)
    if ranks.world_size > 1:  # one set of weights, whatever each rank's random generator did
        for tensor in [*hf.parameters(), *hf.buffers()]:
            dist.broadcast(tensor.data, src=0)
    model = Model(hf=hf, tokenizer=shapes.stand_in_tokenizer(hf.config.vocab_size), spec=f"random {args.shape}")
    vocab = hf.config.vocab_size
    g = torch.Generator().manual_seed(0)
    inputs = [torch.randint(5, vocab, (args.seq,), generator=g) for _ in range(args.inputs)]
    pairs = [
        ContrastPair(shapes.words(g, vocab, 24), shapes.words(g, vocab, 32), shapes.words(g, vocab, 32), "made up")
        for _ in range(args.pairs)
    ]
    questions = [shapes.words(g, vocab, 24) for _ in range(args.questions)]

    def timed(fn):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        if ranks.world_size > 1:
            dist.barrier()
        start = time.perf_counter()
        out = fn()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        return out, time.perf_counter() - start

    cache = lambda: distributed.cache_activations(  # noqa: E731
        model, inputs, positions="all", reduce="mean", batch_size=args.batch, progress=False
    )
    contrast = lambda: distributed.contrast_logprobs(model, pairs, batch_size=args.batch, progress=False)  # noqa: E731
    sample = lambda: distributed.generate(  # noqa: E731
        model,
        questions,
        n_samples=args.samples,
        max_new_tokens=args.new_tokens,
        batch_size=args.gen_batch,
        seed=0,
        progress=False,
    )
    cache(), contrast(), sample()  # warm-up (sample: the compiled static-cache decode step of `auto`)
    means, cache_s = timed(cache)
    items, contrast_s = timed(contrast)
    answers, generate_s = timed(sample)
    if ranks.rank == 0:
        tokens = args.inputs * args.seq
        result = {
            "world_size": ranks.world_size,
            "device": torch.cuda.get_device_name() if device.startswith("cuda") else "cpu",
            "dtype": str(dtype),
            "cache_tokens_per_s": tokens / cache_s,
            "contrast_items_per_s": len(pairs) / contrast_s,
            "generate_answers_per_s": len(answers) / generate_s,
            "generate_tokens_per_s": sum(a.n_tokens for a in answers) / generate_s,
            "seconds": {"cache": cache_s, "contrast": contrast_s, "generate": generate_s},
        }
        out = Path(args.result)
        torch.save({"means": means, "items": items, "answers": [a.answer for a in answers]}, out / "tensors.pt")
        (out / "result.json").write_text(json.dumps(result))
    distributed.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shape", default="qwen2.5-7b", choices=sorted(shapes.SHAPES))
    parser.add_argument("--ranks", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--dtype", default=None, help="default: bfloat16 on CUDA, float32 on CPU")
    parser.add_argument("--inputs", type=int, default=256, help="sequences to cache")
    parser.add_argument("--seq", type=int, default=512)
    parser.add_argument("--batch", type=int, default=32, help="batch size of caching and scoring")
    parser.add_argument("--pairs", type=int, default=256, help="contrast pairs to score")
    parser.add_argument("--questions", type=int, default=64)
    parser.add_argument("--samples", type=int, default=4)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--gen-batch", type=int, default=64)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--result", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return

    runs = {}
    for n in args.ranks:
        folder = tempfile.mkdtemp(prefix=f"distributed-bench-{n}-")
        command = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            f"--nproc-per-node={n}",
            __file__,
            *sys.argv[1:],
            "--worker",
            "--result",
            folder,
        ]
        env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
        start = time.perf_counter()
        subprocess.run(command, check=True, env=env)
        runs[n] = {
            **json.loads((Path(folder) / "result.json").read_text()),
            "wall_s": time.perf_counter() - start,
            "tensors": torch.load(Path(folder) / "tensors.pt", weights_only=False),
        }

    one = runs[args.ranks[0]]
    print(f"\n{args.shape} on {one['device']} ({one['dtype']}); speed-up over {args.ranks[0]} rank(s)")
    print(
        f"{'ranks':>5s} {'cache tok/s':>12s} {'x':>5s} {'contrast it/s':>13s} {'x':>5s} {'answers/s':>10s} "
        f"{'x':>5s} {'mean |diff|max':>14s} {'items |diff|max':>15s} {'answers same':>12s}"
    )
    for n, run in runs.items():
        t, ref = run["tensors"], one["tensors"]
        run["means_max_abs_diff"] = float((t["means"] - ref["means"]).abs().max())
        run["items_max_abs_diff"] = float((t["items"] - ref["items"]).abs().max())
        run["answers_identical"] = sum(a == b for a, b in zip(t["answers"], ref["answers"], strict=True)) / len(
            ref["answers"]
        )
        speed = [run[k] / one[k] for k in ("cache_tokens_per_s", "contrast_items_per_s", "generate_answers_per_s")]
        print(
            f"{n:5d} {run['cache_tokens_per_s']:12.0f} {speed[0]:5.2f} {run['contrast_items_per_s']:13.1f} "
            f"{speed[1]:5.2f} {run['generate_answers_per_s']:10.2f} {speed[2]:5.2f} "
            f"{run['means_max_abs_diff']:14.2e} {run['items_max_abs_diff']:15.2e} "
            f"{run['answers_identical']:12.2f}"
        )
    if os.environ.get("OUT"):
        summary = {n: {k: v for k, v in run.items() if k != "tensors"} for n, run in runs.items()}
        with open(os.path.join(os.environ["OUT"], "distributed_bench.json"), "w") as f:
            json.dump({"shape": args.shape, "args": vars(args), "runs": summary}, f, indent=1)


if __name__ == "__main__":
    main()
