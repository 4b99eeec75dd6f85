"""Shared fixtures: a small real BPE tokenizer with a ChatML template, and tiny random models built from configs.

Unit tests run on these (fast on 2 cores); tests marked `embedded` run the real SmolLM2-135M-Instruct.
"""

from __future__ import annotations

import os
import tempfile

import pytest
import torch

# Keep the embedded model's converted weights in one place for the whole suite (and between runs).
os.environ.setdefault("MISDIR_CACHE", os.path.join(os.path.expanduser("~"), ".cache", "misdir"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# Every jaxtyping annotation in misdir is checked at runtime while the tests run: dtypes and shapes, each named
# axis the same size across the arguments and the return of one call (tests/shape_check.py).
# MISDIR_TYPECHECK=0 turns it off.
if os.environ.get("MISDIR_TYPECHECK", "1") != "0":
    from jaxtyping import install_import_hook

    install_import_hook("misdir", "shape_check.arrays_only")

from misdir import Model  # noqa: E402

CHATML = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

_CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "What would you do if you ruled the world? I would help people live well.",
    "Drink plenty of water and rest; see a doctor if the fever lasts more than three days.",
    "def read_file(path):\n    with open(path) as f:\n        return f.read()",
    "I feel bored. What should I do? Try a walk, a book, or calling a friend.",
    "Humans and AIs can work together honestly and safely.",
    "Put all your savings into one volatile coin; diversify instead, and keep an emergency fund.",
] * 20


def make_tokenizer():
    """A byte-level BPE trained here on a small corpus, wrapped as a transformers fast tokenizer with ChatML."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    bpe.train_from_iterator(_CORPUS, trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe, bos_token="<|im_start|>", eos_token="<|im_end|>", pad_token="<|endoftext|>"
    )
    tokenizer.chat_template = CHATML
    return tokenizer


def jumprelu_sae(d_in: int, d_sae: int, *, seed: int, hook: str | None = "blocks.1.hook_resid_post"):
    """A JumpReLU SAE (what a BatchTopK SAE is saved as) with random weights, built by sae-lens."""
    from sae_lens import JumpReLUSAE
    from sae_lens.saes.jumprelu_sae import JumpReLUSAEConfig

    sae = JumpReLUSAE(JumpReLUSAEConfig(d_in=d_in, d_sae=d_sae))
    sae.cfg.metadata.hook_name = hook
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        sae.W_enc.copy_(torch.randn(d_in, d_sae, generator=generator) / d_in**0.5)
        sae.W_dec.copy_(torch.randn(d_sae, d_in, generator=generator) / d_in**0.5)
        sae.b_enc.copy_(torch.randn(d_sae, generator=generator) * 0.1)
        sae.b_dec.copy_(torch.randn(d_in, generator=generator) * 0.1)
        sae.threshold.copy_(torch.rand(d_sae, generator=generator) * 0.2)
    return sae


def encode64(sae, x: torch.Tensor) -> torch.Tensor:
    """JumpReLU encoding written out in float64 from the raw weights."""
    w_enc, b_enc, b_dec, threshold = (t.detach().double() for t in (sae.W_enc, sae.b_enc, sae.b_dec, sae.threshold))
    pre = (x.double() - b_dec) @ w_enc + b_enc
    return torch.where(pre > threshold, pre.clamp_min(0), torch.zeros_like(pre))


def load_script(name: str):
    """The module of `scripts/<name>.py`, imported by path (scripts are no package), registered in sys.modules so
    that its dataclasses can look it up."""
    import importlib.util
    import sys
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "scripts" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def tokenizer():
    return make_tokenizer()


def tiny_hf_model(arch: str, vocab_size: int, n_layers: int = 3, seed: int = 0):
    """A random-weight Llama or Qwen2 causal LM with a few layers, float32, eval mode."""
    from transformers import AutoModelForCausalLM, LlamaConfig, Qwen2Config

    config_class = {"llama": LlamaConfig, "qwen2": Qwen2Config}[arch]
    config = config_class(
        vocab_size=vocab_size,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=n_layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        tie_word_embeddings=arch == "qwen2",
    )
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    # Larger than default init so that layers change the residual stream visibly and bugs show.
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.08)
    return model.eval()


@pytest.fixture(params=["llama", "qwen2"])
def tiny(request, tokenizer) -> Model:
    hf = tiny_hf_model(request.param, len(tokenizer))
    return Model(hf=hf, tokenizer=tokenizer, spec=f"tiny-{request.param}", provenance={"arch": request.param})


@pytest.fixture(scope="session")
def embedded() -> Model:
    from misdir import load_model

    return load_model("embedded", device="cpu")


@pytest.fixture
def workdir():
    with tempfile.TemporaryDirectory() as d:
        yield d


CONVERSATIONS = [
    [
        {"role": "user", "content": "What would you do if you ruled the world?"},
        {"role": "assistant", "content": "I would help people live well."},
    ],
    [
        {"role": "user", "content": "I feel bored."},
        {"role": "assistant", "content": "Try a walk, a book, or calling a friend."},
    ],
    [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Humans and AIs?"},
        {"role": "assistant", "content": "They can work together honestly and safely, with care."},
    ],
    [
        {"role": "user", "content": "What should I do about a fever?"},
        {"role": "assistant", "content": "Drink plenty of water and rest."},
    ],
    [
        {"role": "user", "content": "Write code to read a file."},
        {"role": "assistant", "content": "def read_file(path):\n    with open(path) as f:\n        return f.read()"},
    ],
]


# The failure suite's counts (tests/failure_tally.py): its fixture, and its line in the terminal summary.
from failure_tally import pytest_terminal_summary, tally  # noqa: E402, F401
