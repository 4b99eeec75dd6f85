"""Hooks and ablation on a model split over devices by accelerate (device_map), checked and timed.

GPU (device tool, kind nvidia-h200-x2), random-weight Qwen2.5-72B shape in bf16 (145 GB, over two H200s):
    python bench/model_parallel.py --shape qwen2.5-72b --devices cuda:0 cuda:1
CPU smoke run (the same code; both "devices" the CPU, so accelerate's hooks still run between them):
    python bench/model_parallel.py --shape small --devices cpu cpu --twin-layers 4 --tokens 64 --new-tokens 4

1. Twin check. A model of the same width but `--twin-layers` layers is computed twice: whole on the first
   device, and split over all devices by accelerate (the device map that `device_map="auto"` would infer,
   from a per-device memory budget that forces the split). Compared, to bf16 rounding: the cached mean of
   every layer's resid_post, the same under `misdir.ablate` at resid_pre/mid/post of every layer, the
   logits under that ablation, and the contrast metric's per-item log-probs under it.
2. The full shape, split with `device_map="auto"` the same way: weights per device, `cache_activations`
   tokens/s over every layer, the component along the ablated direction at every layer (it must be ~0),
   and greedy decode tokens/s plain and under `ablate`, against the one-GPU-at-a-time roofline (a layer
   split is a pipeline with one stage busy: weight bytes / `--bandwidth` per step).
Writes JSON to $OUT/model_parallel.json when $OUT is set.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import shapes
import torch

RESID = ("resid_pre", "resid_mid", "resid_post")


def split_model(shape: str, n_layers: int | None, devices: list[str], dtype: torch.dtype, seed: int = 0):
    """A random-weight model of `shape` (with `n_layers` layers if given), weights made directly on the
    devices that accelerate's auto device map assigns (one device when `devices` has one)."""
    from accelerate import dispatch_model, infer_auto_device_map, init_empty_weights
    from accelerate.utils import set_module_tensor_to_device
    from transformers import AutoModelForCausalLM

    cfg = shapes.config(shape, **({"num_hidden_layers": n_layers} if n_layers else {}))
    with init_empty_weights():  # parameters on meta, buffers (rotary frequencies) real
        model = AutoModelForCausalLM.from_config(cfg, dtype=dtype)
    total = shapes.parameter_bytes(model)
    if len(devices) == 1:
        device_map = {"": devices[0]}
    elif all(d.startswith("cuda:") for d in devices):  # what device_map="auto" does, with a budget per
        # GPU of just over an even share, so that it must use every GPU
        budget = {int(d.split(":")[1]): int(total / len(devices) * 1.3) for d in devices}
        device_map = infer_auto_device_map(model, max_memory=budget, no_split_module_classes=model._no_split_modules)
        device_map = {name: f"cuda:{d}" if isinstance(d, int) else d for name, d in device_map.items()}
    else:  # accelerate's auto map knows only accelerators: split the layers evenly by hand
        n = cfg.num_hidden_layers
        device_map = {
            "model.embed_tokens": devices[0],
            "model.norm": devices[-1],
            "model.rotary_emb": devices[-1],
        }
        device_map |= {f"model.layers.{i}": devices[i * len(devices) // n] for i in range(n)}
        device_map["lm_head"] = devices[-1]
    if any(d in ("cpu", "disk") for d in device_map.values()) and all(d.startswith("cuda") for d in devices):
        raise SystemExit(f"the model does not fit on {devices}: {device_map}")
    for index, (name, param) in enumerate(model.named_parameters()):
        device = next(d for prefix, d in _longest_first(device_map) if name.startswith(prefix))
        generator = torch.Generator(device=device).manual_seed(seed * 100003 + index)
        value = torch.empty(param.shape, dtype=dtype, device=device)
        if name.endswith("norm.weight"):
            value.fill_(1.0)
        else:
            value.normal_(0, 0.08 if shape in ("tiny", "small") else 0.02, generator=generator)
        set_module_tensor_to_device(model, name, device, value=value)
    if len(devices) == 1:
        return model.to(devices[0]).eval(), device_map
    return dispatch_model(model, device_map=device_map).eval(), device_map


def _longest_first(device_map: dict[str, str]) -> list[tuple[str, str]]:
    return sorted(device_map.items(), key=lambda kv: -len(kv[0]))


def synchronize_all(devices: list[str]) -> None:
    for device in set(devices):
        shapes.synchronize(device)


def relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float() - b.float()).norm() / b.float().norm())


def twin_check(args, dtype: torch.dtype) -> dict[str, object]:
    from misdir import Model, ablate, cache_activations
    from misdir.contrast import contrast_logprobs
    from misdir.questions import ContrastPair

    g = torch.Generator().manual_seed(0)
    vocab = shapes.SHAPES[args.shape]["vocab_size"]
    texts = [torch.randint(5, vocab, (args.seq,), generator=g) for _ in range(args.tokens // args.seq)]
    r = torch.randn(shapes.SHAPES[args.shape]["hidden_size"], generator=g)
    pairs = [ContrastPair(*(shapes.words(g, vocab, 16) for _ in range(3)), "made up") for _ in range(8)]
    tokenizer = shapes.stand_in_tokenizer(vocab)
    out = {}
    for name, devices in (("one", args.devices[:1]), ("split", args.devices)):
        hf, device_map = split_model(args.shape, args.twin_layers, devices, dtype)
        model = Model(hf=hf, tokenizer=tokenizer, spec=f"{args.shape} x{args.twin_layers} on {name}")
        options = dict(positions="all", batch_size=args.batch, progress=False)
        with torch.inference_mode():
            mean = cache_activations(model, texts, **options)
            with ablate(model, r, site=RESID):
                ablated = cache_activations(model, texts, **options)
                logits = hf(torch.stack(texts[: args.batch]).to(model.input_device)).logits.float().cpu()
                scores = contrast_logprobs(model, pairs, batch_size=args.batch, progress=False)
        out[name] = (mean, ablated, logits, scores, sorted(set(map(str, device_map.values()))))
        del hf, model
    (m1, a1, l1, s1, _), (m2, a2, l2, s2, used) = out["one"], out["split"]
    return {
        "devices_used_by_split": used,
        "mean_rel_diff": relative(m2, m1),
        "ablated_mean_rel_diff": relative(a2, a1),
        "ablated_logits_rel_diff": relative(l2, l1),
        "ablated_contrast_max_abs_diff": float((s2 - s1).abs().max()),
        "ablated_component_along_r": float((a2 @ (r / r.norm())).abs().max() / a2.norm(dim=-1).max()),
    }


def full_split(args, dtype: torch.dtype) -> dict[str, object]:
    from misdir import Model, ablate, cache_activations

    start = time.perf_counter()
    hf, device_map = split_model(args.shape, None, args.devices, dtype)
    build_s = time.perf_counter() - start
    model = Model(hf=hf, tokenizer=None, spec=f"random {args.shape} split")
    per_device: dict[str, float] = {}
    for p in hf.parameters():
        per_device[str(p.device)] = per_device.get(str(p.device), 0) + p.numel() * p.element_size() / 1e9
    g = torch.Generator().manual_seed(1)
    cfg = hf.config
    texts = [torch.randint(5, cfg.vocab_size, (args.seq,), generator=g) for _ in range(args.tokens // args.seq)]
    r = torch.randn(cfg.hidden_size, generator=g)

    def cache():
        return cache_activations(model, texts, positions="all", batch_size=args.batch, progress=False)

    cache()  # warm-up
    synchronize_all(args.devices)
    start = time.perf_counter()
    cache()
    synchronize_all(args.devices)
    cache_s = time.perf_counter() - start
    with ablate(model, r, site=RESID):
        ablated = cache()
    component = (ablated @ (r / r.norm())).abs() / ablated.norm(dim=-1)

    ids = torch.randint(5, cfg.vocab_size, (args.gen_batch, args.seq), generator=g).to(model.input_device)

    def decode(n: int) -> float:
        synchronize_all(args.devices)
        start = time.perf_counter()
        with torch.inference_mode():
            hf.generate(
                input_ids=ids,
                attention_mask=torch.ones_like(ids),
                max_new_tokens=n,
                min_new_tokens=n,
                do_sample=False,
                pad_token_id=0,
                eos_token_id=None,
            )
        synchronize_all(args.devices)
        return time.perf_counter() - start

    # eager decoding through accelerate's hooks is launch-bound and noisy: interleave the two states and take
    # the median of `--repeats` differences t(n) - t(1)
    seconds: dict[str, list[float]] = {"plain": [], "ablate": []}
    for _ in range(args.repeats):
        for name, context in (("plain", None), ("ablate", RESID)):
            with ablate(model, r, site=context) if context else torch.inference_mode():
                decode(2)
                seconds[name].append(decode(args.new_tokens) - decode(1))
    rates = {name: args.gen_batch * (args.new_tokens - 1) / statistics.median(s) for name, s in seconds.items()}
    weight_bytes = shapes.parameter_bytes(hf)
    return {
        "build_seconds": build_s,
        "weights_gb_per_device": per_device,
        "layers_per_device": {
            d: sum(1 for k, v in device_map.items() if ".layers." in k and v == d)
            for d in set(map(str, device_map.values()))
        },
        "cache_tokens_per_s": len(texts) * args.seq / cache_s,
        "ablated_max_component_along_r": float(component.max()),
        "decode_tokens_per_s": rates,
        "ablate_over_plain": rates["ablate"] / rates["plain"],
        "roofline_tokens_per_s": args.gen_batch * args.bandwidth / weight_bytes,
        "weight_bytes": weight_bytes,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shape", default="qwen2.5-72b", choices=sorted(shapes.SHAPES))
    parser.add_argument("--devices", nargs="+", default=["cuda:0", "cuda:1"])
    parser.add_argument("--dtype", default=None, help="default: bfloat16 on CUDA, float32 on CPU")
    parser.add_argument("--twin-layers", type=int, default=8)
    parser.add_argument("--tokens", type=int, default=4096, help="tokens cached (sequences of --seq)")
    parser.add_argument("--seq", type=int, default=512)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--gen-batch", type=int, default=1)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3, help="decode timings per state (median)")
    parser.add_argument("--bandwidth", type=float, default=4.8e12, help="bytes/s of one device (H200 spec)")
    parser.add_argument("--skip-full", action="store_true", help="only the twin check")
    args = parser.parse_args()
    args.seq = min(args.seq, args.tokens)
    dtype = getattr(torch, args.dtype or ("bfloat16" if args.devices[0].startswith("cuda") else "float32"))

    result: dict[str, object] = {
        "shape": args.shape,
        "devices": args.devices,
        "dtype": str(dtype),
        "torch": torch.__version__,
        "transformers": __import__("transformers").__version__,
    }
    result["twin"] = twin = twin_check(args, dtype)
    print(f"\ntwin check ({args.twin_layers} layers of {args.shape}, one device vs split over {args.devices}):")
    for key, value in twin.items():
        print(f"  {key:32s} {value}")
    if not args.skip_full:
        result["full"] = full = full_split(args, dtype)
        print(f"\n{args.shape} split over {args.devices} ({dtype}):")
        for key, value in full.items():
            print(f"  {key:32s} {value}")
    if os.environ.get("OUT"):
        with open(os.path.join(os.environ["OUT"], "model_parallel.json"), "w") as f:
            json.dump(result, f, indent=1, default=str)


if __name__ == "__main__":
    main()
