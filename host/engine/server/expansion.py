"""Prompt expansion: a small GPT-2 text model grows a short prompt ("a fox in snow") into a fuller one.

It runs on the engine's side, in a process of its own (torch and transformers never enter the service process
or the tray), started on the first expansion and kept: the image worker's jobs never wait for it, nor it for
them. The model downloads like any model (its size announced first, into the shared hub cache). The text is
sampled with the caller's seed, so one seed always gives one expansion (docs/prompts.md).

Endpoint: POST /v1/expand {"prompt", "seed", "max_new_tokens"?, "model"?} -> {"prompt", "expansion", "seed",
"model", "seconds", "notes"}.
"""

from __future__ import annotations

import logging
import re
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from dreamtray.request import MAX_SEED

DEFAULT_MODEL = "Gustavosta/MagicPrompt-Stable-Diffusion"
"""GPT-2 (124 M parameters) tuned on Stable Diffusion prompts; MIT licence (docs/models.md)."""
PATTERNS = ["config.json", "generation_config.json", "*.safetensors", "vocab.json", "merges.txt", "tokenizer*.json"]
"""The files an expansion model needs: weights as safetensors only (no pickle)."""
MAX_NEW_TOKENS = 40
TOP_K = 50
WAIT_SECONDS = 900.0
"""How long an expansion may take, a first download of the model included."""
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")
log = logging.getLogger("dreamtray.expansion")


class ExpandRequest(BaseModel):
    """The body of POST /v1/expand."""

    model_config = ConfigDict(extra="forbid")

    prompt: str = Field(min_length=1, max_length=2000)
    seed: int = Field(0, ge=0, le=MAX_SEED)
    max_new_tokens: int = Field(MAX_NEW_TOKENS, ge=1, le=200)
    model: str = DEFAULT_MODEL


class ExpansionError(RuntimeError):
    """The expansion model cannot be found, downloaded or loaded; the message says which and why."""


class Expanders:
    """The process that expands prompts, started on first use; `close()` ends it."""

    def __init__(self, cache_dir: Path) -> None:
        self.cache_dir = cache_dir
        self._pool: ProcessPoolExecutor | None = None

    def expand(self, ask: ExpandRequest) -> dict[str, Any]:
        if self._pool is None:
            import multiprocessing

            self._pool = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"))
        future = self._pool.submit(expand_in_process, ask.model_dump(), str(self.cache_dir))
        try:
            return future.result(timeout=WAIT_SECONDS)
        except FutureTimeout:
            self.close()
            raise ExpansionError(f"The expansion took over {WAIT_SECONDS:.0f} s and was given up.") from None
        except BrokenProcessPool:
            self.close()
            raise ExpansionError("The expansion process ended unexpectedly (out of memory?); try again.") from None

    def close(self) -> None:
        if self._pool is not None:
            processes = list((getattr(self._pool, "_processes", None) or {}).values())
            self._pool.shutdown(wait=False, cancel_futures=True)
            for process in processes:
                process.kill()
            self._pool = None


def add_expansion_route(app: Any, guarded: list[Any], cache_dir: Path) -> None:
    """POST /v1/expand on the service's `app`, behind its token; `close_expansions(app)` ends its process."""
    from fastapi import HTTPException

    expanders = app.state.expanders = Expanders(cache_dir)

    @app.post("/v1/expand", dependencies=guarded)
    def expand(ask: ExpandRequest) -> dict[str, Any]:
        try:
            return expanders.expand(ask)
        except ExpansionError as exc:
            raise HTTPException(503, str(exc)) from None


def close_expansions(app: Any) -> None:
    """End the expansion process of the service's `app`, if it has one."""
    expanders = getattr(app.state, "expanders", None)
    if expanders is not None:
        expanders.close()


# -- in the expansion process -------------------------------------------------------------------------------

_loaded: dict[str, tuple[Any, Any]] = {}


def expand_in_process(ask: dict[str, Any], cache_dir: str) -> dict[str, Any]:
    """Expand `ask["prompt"]` with its seed (runs in the expansion process; the model stays loaded)."""
    started = time.perf_counter()
    notes: list[str] = []
    model, tokenizer = _model(ask["model"], Path(cache_dir), notes)
    expansion = expand_text(model, tokenizer, ask["prompt"], ask["seed"], ask["max_new_tokens"])
    return {
        "prompt": ask["prompt"],
        "expansion": expansion,
        "seed": ask["seed"],
        "model": ask["model"],
        "seconds": round(time.perf_counter() - started, 3),
        "notes": notes,
    }


def expand_text(step: Any, tokenizer: Any, prompt: str, seed: int, max_new_tokens: int) -> str:
    """The prompt followed by what the model writes after it, sampled with `seed` (top-k), on one line.

    `step` gives the logits of the next token (TorchStepper, or expansion_openvino.OpenVinoStepper); the loop
    has its own random generator, so the seed alone decides the text."""
    import torch

    words = " ".join(prompt.split())
    ids = tokenizer(words, return_tensors="pt")["input_ids"]
    generator = torch.Generator().manual_seed(seed)
    written: list[int] = []
    step.start()
    with torch.inference_mode():
        for _ in range(max_new_tokens):
            top = torch.topk(step(ids).float(), TOP_K)
            order = torch.argsort(top.indices)  # by token id: near-ties ranked otherwise by another backend
            chosen = torch.multinomial(torch.softmax(top.values[order], -1), 1, generator=generator)
            token = int(top.indices[order][chosen])
            if token == tokenizer.eos_token_id:
                break
            written.append(token)
            ids = torch.tensor([[token]])
    added = " ".join(tokenizer.decode(written, skip_special_tokens=True).split())
    return f"{words}{'' if not added or added[0] in ',.;:' else ' '}{added}".strip()


class TorchStepper:
    """Next-token logits from the transformers model over its key/value cache; `start()` forgets the past."""

    def __init__(self, model: Any) -> None:
        self.model, self.cache = model, None

    def start(self) -> None:
        self.cache = None

    def __call__(self, ids: Any) -> Any:
        output = self.model(input_ids=ids, cache=self.cache, use_cache=True, logits_to_keep=1)
        self.cache = output.cache
        return output.logits[0, -1]


def _model(source: str, cache_dir: Path, notes: list[str]) -> tuple[Any, Any]:
    """The next-token stepper and the tokenizer of `source`, loaded once per process."""
    if source not in _loaded:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        folder = _folder(source, cache_dir, notes)
        try:
            tokenizer = AutoTokenizer.from_pretrained(folder)
            model = AutoModelForCausalLM.from_pretrained(folder, use_safetensors=True).eval()
        except (OSError, ValueError) as exc:
            raise ExpansionError(f"The expansion model {source} cannot be loaded: {exc}") from None
        _loaded[source] = (_stepper(model, source, cache_dir, notes), tokenizer)
    return _loaded[source]


def _stepper(model: Any, source: str, cache_dir: Path, notes: list[str]) -> Any:
    """OpenVINO with int8 weights (converted once, cached: 2-3x faster than torch here, docs/prompts.md), or torch
    where OpenVINO is missing, the model is no plain GPT-2, or converting would not fit the memory."""
    from dreamtray.engine.server import memory

    def say(message: str) -> None:
        log.info("%s", message)
        notes.append(message)

    try:
        from dreamtray.engine.server import expansion_openvino as ovx
    except ImportError as exc:
        say(f"Prompt expansion runs on torch: OpenVINO cannot be imported ({exc}).")
        return TorchStepper(model)
    root = cache_dir / "openvino" / "expansion" / _slug(source)
    need = memory.WORKER_BASE + int(ovx.CONVERT_PEAK_FACTOR * ovx.weights_bytes(model))
    room = memory.budget().room(memory.own_usage())
    if not ovx.is_cached(root) and not memory.fits(need, room):
        say(
            f"Prompt expansion runs on torch: converting it to OpenVINO needs about {memory.gib(need)} and the "
            f"engine has {memory.gib(room)}."
        )
        return TorchStepper(model)
    try:
        return ovx.stepper(model, root, "prompt expansion model", lambda event: say(str(event["message"])))
    except (ValueError, RuntimeError) as exc:
        say(f"Prompt expansion runs on torch: OpenVINO could not take the model ({exc}).")
        return TorchStepper(model)


def _slug(source: str) -> str:
    """A folder name for `source`, for people, unique by what `source` says."""
    import hashlib

    name = re.sub(r"[^A-Za-z0-9._-]+", "-", Path(source).name).strip("-") or "model"
    return f"{name}-{hashlib.sha256(source.encode()).hexdigest()[:8]}"


def _folder(source: str, cache_dir: Path, notes: list[str]) -> Path:
    """A local folder as it is; a hub id downloaded (or found) through the engine's download code."""
    path = Path(source).expanduser()
    if path.is_absolute():
        if not (path / "config.json").is_file():
            raise ExpansionError(f"{path} is not a text model folder (it has no config.json).")
        return path
    if not _HUB_ID.fullmatch(source):
        raise ExpansionError(f"{source!r} is neither a hub id (owner/name) nor an absolute folder.")
    from dreamtray.engine.server.download import DownloadError, ensure_snapshot

    def emit(event: dict[str, Any]) -> None:
        if event.get("stage") in ("start", "done") and event.get("message"):
            log.info("%s", event["message"])
            notes.append(str(event["message"]))

    try:
        folder = ensure_snapshot(source, PATTERNS, record_dir=cache_dir, emit=emit)
    except DownloadError as exc:
        raise ExpansionError(f"The expansion model {source} could not be downloaded: {exc}") from None
    if not any(folder.glob("*.safetensors")):
        raise ExpansionError(
            f"The expansion model {source} has no weights in safetensors format (only pickle files such as "
            "pytorch_model.bin, which dreamtray never loads: they can run code). Choose another `expansion_model`, "
            "or a copy of it with model.safetensors."
        )
    return folder
