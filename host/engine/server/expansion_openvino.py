"""The expansion model on OpenVINO: a GPT-2 decode step converted once, its weights compressed to int8, cached.

`openvino.convert_model` traces `DecodeStep` (the model's own modules, one step over an explicit key/value cache;
the transformers cache object does not trace), the IR is kept under the engine's cache with a key (format,
versions, a fingerprint of the weights: openvino_backend.ensure_converted), then NNCF's `compress_weights`
makes its weights int8 (kept beside it). One program with dynamic lengths is compiled per process, with
OpenVINO's CACHE_DIR, at f32 precision. Logits come back as torch tensors, so the sampling (and so the text,
per seed) is the caller's. Measured choice and figures: docs/prompts.md.
"""

from __future__ import annotations  # noqa: I001 (the back end's import comes before OpenVINO's)

import json
from pathlib import Path
from typing import Any

from dreamtray.engine.server import openvino_backend  # first: keeps OpenVINO's telemetry off
from dreamtray.engine.server.openvino_backend import Emit, ensure_converted, read_key, real_folder

import openvino as ov  # noqa: E402  (after openvino_backend)
import torch  # noqa: E402

INT8_FOLDER = "decode-step-int8"
CONVERT_PEAK_FACTOR = 2.0
"""The expansion process's peak while converting and compressing, per byte of the model's fp32 weights beyond
memory.WORKER_BASE: measured 2.0 GB in all for GPT-2 124 M (0.5 GB of weights; bench/prompt_box.py --expansion)."""


class DecodeStep(torch.nn.Module):
    """GPT-2's forward for new tokens over a cache of past keys and values, in plain tensors:
    (input_ids [1, new], past [layers, 2, 1, heads, seen, head size]) -> (logits of the last token, new past)."""

    def __init__(self, model: Any) -> None:
        super().__init__()
        config = model.config
        if config.model_type != "gpt2" or getattr(config, "scale_attn_by_inverse_layer_idx", False):
            raise ValueError(f"OpenVINO expansion supports plain GPT-2 models, not {config.model_type}")
        self.body, self.head = model.transformer, model.lm_head
        self.width, self.heads = config.n_embd, config.n_head

    def forward(self, input_ids: torch.Tensor, past: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        new, seen = input_ids.shape[1], past.shape[4]
        size = self.width // self.heads
        positions = torch.arange(new) + seen
        hidden = self.body.wte(input_ids) + self.body.wpe(positions)[None]
        mask = torch.arange(seen + new)[None, :] <= positions[:, None]
        kept = []
        for index, block in enumerate(self.body.h):
            query, key, value = block.attn.c_attn(block.ln_1(hidden)).split(self.width, dim=2)
            query, key, value = (part.view(1, new, self.heads, size).transpose(1, 2) for part in (query, key, value))
            key, value = torch.cat([past[index, 0], key], dim=2), torch.cat([past[index, 1], value], dim=2)
            kept.append(torch.stack([key, value]))
            attended = torch.nn.functional.scaled_dot_product_attention(query, key, value, attn_mask=mask)
            hidden = hidden + block.attn.c_proj(attended.transpose(1, 2).reshape(1, new, self.width))
            hidden = hidden + block.mlp(block.ln_2(hidden))
        return self.head(self.body.ln_f(hidden[:, -1])), torch.stack(kept)

    def empty_past(self) -> torch.Tensor:
        return torch.zeros(len(self.body.h), 2, 1, self.heads, 0, self.width // self.heads)


def weights_bytes(model: torch.nn.Module) -> int:
    return sum(parameter.numel() * 4 for parameter in model.parameters())


class OpenVinoStepper:
    """Next-token logits from the compiled decode step; `start()` forgets the past."""

    def __init__(
        self, xml: Path, compiled_dir: Path, past: tuple[int, ...], precision: str = "f32", threads: int = 0
    ) -> None:
        core = ov.Core()
        config: dict[str, Any] = {"CACHE_DIR": str(real_folder(compiled_dir)), "PERFORMANCE_HINT": "LATENCY"}
        config["INFERENCE_PRECISION_HINT"] = precision
        if threads:
            config["INFERENCE_NUM_THREADS"] = threads
        self.program = core.compile_model(core.read_model(xml), "CPU", config)
        self.request = self.program.create_infer_request()
        self.empty = past
        """The shape of an empty past (DecodeStep.empty_past)."""
        self.past: Any = None

    def start(self) -> None:
        import numpy

        self.past = numpy.zeros(self.empty, dtype=numpy.float32)

    def __call__(self, ids: torch.Tensor) -> torch.Tensor:
        self.request.infer([ids.numpy(), self.past])
        self.past = self.request.get_output_tensor(1).data.copy()
        return torch.from_numpy(self.request.get_output_tensor(0).data.copy())[0]


def ensure_int8_step(model: Any, root: Path, label: str, emit: Emit) -> Path:
    """The int8 decode step of `model` under `root` (converted and compressed now unless cached); its IR file."""
    import nncf
    from filelock import FileLock

    step = DecodeStep(model).eval()
    past = step.empty_past()
    example = (torch.tensor([[0, 1]]), torch.zeros(*past.shape[:4], 3, past.shape[5]))
    converted = ensure_converted(root / "decode-step", step, example, label, emit)
    target = root / INT8_FOLDER
    source_key = read_key(converted.folder)
    with FileLock(openvino_backend.lock_file(target)):
        if read_key(target) != source_key or not (target / "model.xml").is_file():
            openvino_backend.remove_or_raise(target)
            emit({"kind": "loading", "message": f"Compressing the {label}'s weights to int8 (once)"})
            from dreamtray.atomic import staged_folder, write_atomically

            with staged_folder(target) as staging:
                ov.save_model(nncf.compress_weights(converted.model), staging / "model.xml")
                write_atomically(staging / "key.json", json.dumps(source_key or {}, indent=2))
    return target / "model.xml"


def is_cached(root: Path) -> bool:
    """Whether an int8 decode step is kept under `root` (current or not: the key is checked on use)."""
    return (root / INT8_FOLDER / "model.xml").is_file()


def stepper(model: Any, root: Path, label: str, emit: Emit) -> OpenVinoStepper:
    """The int8 decode step of `model` (converted and compressed once, under `root`), compiled for this process."""
    xml = ensure_int8_step(model, root, label, emit)
    # f32 precision: with int8 weights as fast as bf16 or faster here, and the same on every CPU (measured)
    return OpenVinoStepper(xml, root / "compiled", tuple(DecodeStep(model).empty_past().shape), "f32")
