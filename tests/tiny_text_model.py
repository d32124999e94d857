"""A random-weight GPT-2 in the prompt-expansion model's shape, built offline from a config.

The vocabulary has GPT-2's size and special token (50,257 entries, `<|endoftext|>` last): GPT-2's byte-level
alphabet, each byte alone (so any text tokenizes, without merges), then filler words up to the full size (the
model can write them; they decode as plain words). `tiny` layers for tests; `real_shape=True` gives GPT-2
small's layers (124 M parameters, MagicPrompt's shape) for benchmarks.
"""

from __future__ import annotations

from pathlib import Path

VOCAB_SIZE = 50257
END = "<|endoftext|>"


def _byte_alphabet() -> list[str]:
    """GPT-2's bytes-to-unicode table: printable bytes stand for themselves, the others move above 255."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    shifted, extra = [], 0
    for byte in range(256):
        if byte in printable:
            shifted.append(chr(byte))
        else:
            shifted.append(chr(256 + extra))
            extra += 1
    return shifted


def build_text_model(folder: Path, real_shape: bool = False, seed: int = 0) -> Path:
    """Write the tokenizer files and a random-weight GPT-2 (safetensors) into `folder`; returns it."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel, GPT2Tokenizer

    folder.mkdir(parents=True, exist_ok=True)
    symbols = _byte_alphabet()
    fillers = [f"Ġw{number}" for number in range(VOCAB_SIZE - 1 - len(symbols))]
    vocab = {token: index for index, token in enumerate([*symbols, *fillers, END])}
    GPT2Tokenizer(vocab=vocab, merges=[], model_max_length=1024).save_pretrained(folder)
    shape = {"n_embd": 768, "n_layer": 12, "n_head": 12} if real_shape else {"n_embd": 32, "n_layer": 2, "n_head": 2}
    end = VOCAB_SIZE - 1
    config = GPT2Config(vocab_size=VOCAB_SIZE, n_positions=1024, bos_token_id=end, eos_token_id=end, **shape)
    torch.manual_seed(seed)
    GPT2LMHeadModel(config).save_pretrained(folder, safe_serialization=True)
    return folder
