"""Model shapes for the benchmarks, built from a config with random weights (throughput does not depend on
the values), and a stand-in tokenizer for code paths that want one.

Importing this module also puts the repository root first on `sys.path`, so `python bench/X.py` runs this
checkout's misdir from any directory.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SHAPES: dict[str, dict[str, int | bool]] = {
    # CPU smoke shapes: the same code paths in seconds.
    "tiny": dict(
        num_hidden_layers=4,
        hidden_size=64,
        num_attention_heads=4,
        num_key_value_heads=2,
        intermediate_size=128,
        vocab_size=512,
    ),
    "small": dict(
        num_hidden_layers=6,
        hidden_size=256,
        num_attention_heads=8,
        num_key_value_heads=2,
        intermediate_size=768,
        vocab_size=4096,
    ),
    # Qwen2.5 shapes from the public model cards (see ../shared/ENVIRONMENT.md).
    "qwen2.5-0.5b": dict(
        num_hidden_layers=24,
        hidden_size=896,
        num_attention_heads=14,
        num_key_value_heads=2,
        intermediate_size=4864,
        vocab_size=151936,
        tie_word_embeddings=True,
    ),
    "qwen2.5-7b": dict(
        num_hidden_layers=28,
        hidden_size=3584,
        num_attention_heads=28,
        num_key_value_heads=4,
        intermediate_size=18944,
        vocab_size=152064,
    ),
    "qwen2.5-14b": dict(
        num_hidden_layers=48,
        hidden_size=5120,
        num_attention_heads=40,
        num_key_value_heads=8,
        intermediate_size=13824,
        vocab_size=152064,
    ),
    "qwen2.5-32b": dict(
        num_hidden_layers=64,
        hidden_size=5120,
        num_attention_heads=40,
        num_key_value_heads=8,
        intermediate_size=27648,
        vocab_size=152064,
    ),
    "qwen2.5-72b": dict(
        num_hidden_layers=80,
        hidden_size=8192,
        num_attention_heads=64,
        num_key_value_heads=8,
        intermediate_size=29568,
        vocab_size=152064,
    ),
}


def config(shape: str, **overrides: int | bool):
    """A Qwen2 config of the named shape (RoPE theta 1e6, SDPA attention, untied embeddings unless stated)."""
    from transformers import Qwen2Config

    values = {"tie_word_embeddings": False, **SHAPES[shape], **overrides}
    cfg = Qwen2Config(**values, rope_theta=1e6, max_position_embeddings=4096)
    cfg._attn_implementation = "sdpa"
    return cfg


def build(shape: str, device: str, dtype: torch.dtype, seed: int = 0):
    """A random-weight causal LM of the named shape, made directly on `device` (no CPU copy of 15+ GB)."""
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config(shape), dtype=dtype)
    if shape in ("tiny", "small"):  # larger than default init, so that the small models' layers matter
        with torch.no_grad():
            for p in model.parameters():
                p.normal_(0, 0.08)
    return model.eval()


def stand_in_tokenizer(vocab_size: int):
    """A word-level tokenizer over `vocab_size` made-up words ("t5", "t6", ...; ids 0-4 are "<pad>",
    "<bos>", "<eos>", "<user>", "<assistant>") with a plain chat template: enough for the code paths that
    render chats and find answers by offsets."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    specials = ["<pad>", "<bos>", "<eos>", "<user>", "<assistant>"]
    vocab = {word: i for i, word in enumerate(specials)} | {f"t{i}": i for i in range(len(specials), vocab_size)}
    model = Tokenizer(models.WordLevel(vocab, unk_token="<pad>"))
    model.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=model, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>", unk_token="<pad>"
    )
    tokenizer.chat_template = (
        "{% for m in messages %}<user> {{ m['content'] }} <eos> {% endfor %}"
        "{% if add_generation_prompt %}<assistant> {% endif %}"
    )
    return tokenizer


def words(generator: torch.Generator, vocab_size: int, n: int) -> str:
    """`n` random made-up words of the stand-in tokenizer (none of its special ones)."""
    return " ".join(f"t{i}" for i in torch.randint(5, vocab_size, (n,), generator=generator).tolist())


def parameter_bytes(model: torch.nn.Module) -> int:
    return sum(p.numel() * p.element_size() for p in model.parameters())


def synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()
