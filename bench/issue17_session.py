"""Every GPU figure of issue 17 in one process, in priority order, each part's JSON written as soon as it ends.

(a) decode tok/s of plain / ablate / ablate3 (hooks) / ablate3w (writers) / orthogonalized, dynamic and
static-compiled caches, batch 1 and 64, with teacher-forced logit checks (bench/generate_bench.py);
(b) `misdir.generate`'s default decoding against the dynamic cache, plain and ablated;
(c) `misdir evaluate`-style sampling (8 questions x 100 samples x 256 tokens) in answers/s, and contrast
scoring in items/s; (e) the out-of-memory halving of `cache_activations` on a batch that does not fit,
against a run that fits; (d) bench/cache_bench.py (caching / plain forward, MFU) in a subprocess.
A part starts only while enough of `--budget` seconds is left; `bash bench/h200_session.sh` runs it.
CPU smoke run: `python bench/issue17_session.py --shape tiny --device cpu --small`.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import generate_bench as gb
import shapes
import torch

START = time.monotonic()


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')} +{time.monotonic() - START:5.0f}s] {message}", flush=True)


def write(name: str, result: dict) -> None:
    out = Path(os.environ.get("OUT", "."))
    out.mkdir(parents=True, exist_ok=True)
    (out / name).write_text(json.dumps(result, indent=1, default=str))
    log(f"wrote {out / name}")


def sync(device: str) -> None:
    shapes.synchronize(device)


def timed_generate(model, questions, device: str, **settings) -> tuple[float, object]:
    from misdir import generate

    sync(device)
    t0 = time.perf_counter()
    answers = generate(model, questions, progress=False, **settings)
    sync(device)
    return time.perf_counter() - t0, answers


def part_b(bench: gb.Bench, args) -> dict:
    """misdir.generate: the default decoding ('auto') against the dynamic cache, plain and under ablate3."""
    from misdir import ablate

    model, device = bench.model, args.device
    g = torch.Generator().manual_seed(3)
    questions = [shapes.words(g, model.config.vocab_size, 24) for _ in range(args.b_batch)]
    settings = dict(max_new_tokens=args.b_tokens, batch_size=args.b_batch, temperature=1.0, seed=0)
    out: dict = {"batch": args.b_batch, "new_tokens": args.b_tokens, "rows": {}}
    cases = [
        ("dynamic plain", "dynamic", False),
        ("auto plain", "auto", False),
        ("auto ablate3", "auto", True),
        ("dynamic ablate3", "dynamic", True),
    ]
    for name, cache, edited in cases:
        with ablate(model, bench.r, site=gb.RESID) if edited else gb.nullcontext():
            warm, _ = timed_generate(model, questions, device, cache=cache, **settings)  # compiles
            seconds, answers = timed_generate(model, questions, device, cache=cache, **settings)
        tokens = sum(a.n_tokens for a in answers)
        out["rows"][name] = {
            "seconds": seconds,
            "warm_up_seconds": warm,
            "tokens": tokens,
            "tokens_per_s": tokens / seconds,
            "decoding": answers.provenance["decoding"],
        }
        log(f"(b) {name}: {tokens / seconds:.0f} tok/s (warm-up {warm:.1f} s) {answers.provenance['decoding']}")
    base = out["rows"]["dynamic plain"]["tokens_per_s"]
    for row in out["rows"].values():
        row["ratio_to_dynamic_plain"] = row["tokens_per_s"] / base
    return out


def part_c(bench: gb.Bench, args) -> dict:
    """Sampling answers/s as `misdir evaluate` does it, and contrast-scoring items/s."""
    from misdir import Model
    from misdir.contrast import contrast_margins
    from misdir.questions import ContrastPair

    device = args.device
    model = Model(
        hf=bench.model.hf, tokenizer=shapes.stand_in_tokenizer(bench.model.config.vocab_size), spec=bench.model.spec
    )
    g = torch.Generator().manual_seed(4)
    vocab = model.config.vocab_size
    questions = [(f"q{i}", shapes.words(g, vocab, 20 + 3 * i)) for i in range(args.c_questions)]
    settings = dict(max_new_tokens=args.c_tokens, batch_size=args.c_batch, temperature=1.0, seed=0)
    # the longest question fills one whole batch: the same cache size and batch shape as the timed run
    warm, _ = timed_generate(model, questions[-1:], device, n_samples=args.c_batch, **settings)
    log(f"(c) warm-up (compilation) {warm:.1f} s")
    seconds, answers = timed_generate(model, questions, device, n_samples=args.c_samples, **settings)
    tokens = sum(a.n_tokens for a in answers)
    out = {
        "questions": args.c_questions,
        "samples": args.c_samples,
        "max_new_tokens": args.c_tokens,
        "batch_size": args.c_batch,
        "answers": len(answers),
        "seconds": seconds,
        "warm_up_seconds": warm,
        "answers_per_s": len(answers) / seconds,
        "tokens_per_s": tokens / seconds,
        "finished_share": sum(a.finished for a in answers) / len(answers),
        "decoding": answers.provenance["decoding"],
    }
    log(f"(c) sampling: {out['answers_per_s']:.1f} answers/s, {out['tokens_per_s']:.0f} tok/s, {out['decoding']}")
    pairs = [
        ContrastPair(shapes.words(g, vocab, 30), shapes.words(g, vocab, 60), shapes.words(g, vocab, 60), "t")
        for _ in range(args.c_pairs)
    ]
    contrast_margins(model, pairs[: args.c_pair_batch], batch_size=args.c_pair_batch, progress=False)  # warm-up
    sync(device)
    t0 = time.perf_counter()
    contrast_margins(model, pairs, batch_size=args.c_pair_batch, progress=False)
    sync(device)
    out["contrast"] = {
        "pairs": len(pairs),
        "batch_size": args.c_pair_batch,
        "items_per_s": len(pairs) / (time.perf_counter() - t0),
    }
    log(f"(c) contrast scoring: {out['contrast']['items_per_s']:.1f} items/s")
    return out


def part_e(bench: gb.Bench, args) -> dict:
    """cache_activations on a batch that does not fit (GPU memory filled up to `--e-free-gib` left; on the
    CPU an out-of-memory error is raised for batches over 8 rows), halved until it fits, against a run that
    fits from the start."""
    from misdir import cache_activations
    from misdir.batching import OutOfMemoryError

    model, device = bench.model, args.device
    g = torch.Generator().manual_seed(5)
    inputs = [
        torch.randint(5, model.config.vocab_size, (args.e_seq,), generator=g).tolist() for _ in range(args.e_rows)
    ]
    settings = dict(positions="all", reduce="mean", progress=False)
    messages: list[str] = []

    class Catch(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            messages.append(record.getMessage())

    handler = Catch()
    logging.getLogger("misdir.batching").addHandler(handler)
    filler, hook = None, None
    try:
        if device.startswith("cuda"):
            torch.cuda.empty_cache()
            free = torch.cuda.mem_get_info()[0]
            filler = torch.empty(max(0, free - int(args.e_free_gib * 2**30)), dtype=torch.uint8, device=device)
        else:

            def refuse(module, args_, kwargs):
                ids = kwargs.get("input_ids", args_[0] if args_ else None)
                if ids is not None and ids.shape[0] > 8:
                    raise OutOfMemoryError("simulated: more than 8 rows")

            hook = model.decoder.register_forward_pre_hook(refuse, with_kwargs=True)
        t0 = time.perf_counter()
        halved = cache_activations(model, inputs, batch_size=args.e_rows, **settings)
        seconds = time.perf_counter() - t0
    finally:
        del filler
        if hook is not None:
            hook.remove()
        logging.getLogger("misdir.batching").removeHandler(handler)
        if device.startswith("cuda"):
            torch.cuda.empty_cache()
    fits = cache_activations(model, inputs, batch_size=args.e_fit_batch, **settings)
    diff = float((halved.float() - fits.float()).abs().max() / fits.float().abs().max())
    out = {
        "rows": args.e_rows,
        "seq": args.e_seq,
        "first_batch": args.e_rows,
        "fit_batch": args.e_fit_batch,
        "halvings": messages,
        "seconds": seconds,
        "max_relative_difference": diff,
        "ok": bool(messages) and diff < 1e-2,
    }
    log(f"(e) OOM halving: {messages}; max relative difference to the run that fits {diff:.2e}")
    return out


def part_d(args) -> dict:
    """bench/cache_bench.py in a subprocess (CUDA only)."""
    if not args.device.startswith("cuda"):
        return {"skipped": "cache_bench needs CUDA"}
    command = [
        sys.executable,
        str(Path(__file__).with_name("cache_bench.py")),
        "--shape",
        args.shape,
        "--repeats",
        str(args.d_repeats),
        "--batch",
        str(args.d_batch),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=max(30, args.time_left() - 5))
    print(done.stdout[-3000:], done.stderr[-2000:], flush=True)
    path = Path(os.environ.get("OUT", ".")) / "cache_bench.json"
    return json.loads(path.read_text()) if path.exists() else {"failed": done.returncode, "stderr": done.stderr[-2000:]}


def main() -> None:
    p = gb.parser()
    p.description = __doc__.split("\n\n")[0]
    p.set_defaults(shape="qwen2.5-7b", new_tokens=64, repeats=2, caches=None)
    p.add_argument("--budget", type=float, default=520, help="seconds for the whole session")
    p.add_argument("--small", action="store_true", help="CPU smoke sizes for parts b-e")
    p.add_argument("--parts", default="abced")
    args = p.parse_args()
    args.dtype = args.dtype or ("bfloat16" if args.device.startswith("cuda") else "float32")
    cuda = args.device.startswith("cuda")
    args.caches = args.caches or ["dynamic", "static" if cuda else "static-eager"]
    args.variants = [v for v in args.variants if v != "lens"]
    sizes = dict(
        b_batch=64,
        b_tokens=64,
        c_questions=8,
        c_samples=100,
        c_tokens=256,
        c_batch=200,
        c_pairs=256,
        c_pair_batch=32,
        e_rows=64,
        e_seq=512,
        e_fit_batch=8,
        e_free_gib=3.0,
        d_repeats=3,
        d_batch=32,
    )
    if args.small:
        sizes.update(
            b_batch=4,
            b_tokens=8,
            c_questions=2,
            c_samples=4,
            c_tokens=8,
            c_batch=4,
            c_pairs=8,
            c_pair_batch=4,
            e_rows=16,
            e_seq=16,
            e_fit_batch=4,
        )
    for key, value in sizes.items():
        setattr(args, key, value)
    args.time_left = lambda: args.budget - (time.monotonic() - START)
    log(
        f"issue 17 session: {args.shape} on {args.device} ({args.dtype}), budget {args.budget:.0f} s, "
        f"torch {torch.__version__}, transformers {__import__('transformers').__version__}"
    )
    bench = gb.Bench(args)
    log(
        f"built {args.shape}: {bench.weight_bytes / 1e9:.2f} GB on {bench.device_name}, "
        f"bandwidth {bench.bandwidth / 1e12:.2f} TB/s"
    )
    summary: dict = {}
    if "a" in args.parts:
        part_a_end = args.budget * 0.55  # the rest for parts b-e
        for cache in args.caches:
            bench.measure(cache, time_left=lambda: part_a_end - (time.monotonic() - START))
            bench.report("part_a_decode.json")
        lens_ok = True
        try:
            import transformer_lens  # noqa: F401
        except ImportError:
            lens_ok = False
            log("lens variant skipped: transformer_lens is not installed")
        if lens_ok and args.time_left() > 200:
            bench.lens()
            bench.report("part_a_decode.json")
    del bench.reference, bench.references
    bench.reference, bench.references = None, {}
    bench.ortho = None
    if cuda:
        torch.cuda.empty_cache()
    parts = {
        "b": ("part_b_generate.json", lambda: part_b(bench, args), 80),
        "c": ("part_c_evaluate.json", lambda: part_c(bench, args), 90),
        "e": ("part_e_oom.json", lambda: part_e(bench, args), 30),
        "d": ("part_d_cache.json", lambda: part_d(args), 45),
    }
    for key in [k for k in "bced" if k in args.parts]:
        name, run, needs = parts[key]
        if args.time_left() < needs:
            log(f"part {key} skipped: {args.time_left():.0f} s left, it needs about {needs}")
            summary[key] = "skipped"
            continue
        log(f"part {key} starts")
        try:
            result = run()
        except Exception as error:  # one part's failure must not cost the others
            log(f"part {key} failed: {type(error).__name__}: {error}")
            result = {"failed": f"{type(error).__name__}: {error}"}
        write(name, result)
        summary[key] = "done"
    log(f"session over: {summary}")


if __name__ == "__main__":
    main()
