"""Same subject: an image that keeps the subject of a reference (docs/style-packs.md, "Same subject").

Three methods, chosen by `choose` from the model and the back end the request runs on:
- `shared-attention` (StoryDiffusion's consistent self-attention): while the first image of a subject is made,
  attention processors set on the UNet's self-attention layers record their keys and values at every step; each
  later image's self-attention then attends to its own and the first image's keys and values. The first image is
  exactly what its seed gives alone. A later image made where the record is gone (`generate --from`, another
  engine) makes the first image again to record it: same pixels, twice the time.
- `init-image`: the reference (the first image, made again when it is not at hand, or the user's picture) is the
  init image of image-to-image at the subject's strength. Runs wherever image-to-image does.
- `ip-adapter`: diffusers' IP-Adapter with the reference as `ip_adapter_image`, where the family has one (SD 1.5,
  SDXL) and its weights are on this machine.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import math
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

from dreamtray.engine.server.loaded import Loaded
from dreamtray.request import Request, Result, Subject

Emit = Callable[[dict[str, Any]], None]


class Runner(Protocol):
    """What making a reference again needs of the engine's Runner."""

    loaded: Loaded | None

    def generate(self, request: Request, emit: Emit = ..., cancelled: Callable[[], bool] = ...) -> Result: ...
SHARED_BUDGET_BYTES = 2 * 1024**3
"""The most the first image's recorded keys and values may take; above it, `auto` chooses init-image."""
PUBLISHED_ADAPTERS = {
    768: ("h94/IP-Adapter", "models/ip-adapter_sd15.safetensors"),
    2048: ("h94/IP-Adapter", "sdxl_models/ip-adapter_sdxl.safetensors"),
}
"""IP-Adapter weights by the UNet's cross-attention width: 768 SD 1.5, 2048 SDXL (none is published for SD 2.x)."""
LATENT_SCALE = 8
"""Pixels per latent cell in SD-shaped VAEs."""
_LEVEL = re.compile(r"^(down_blocks|up_blocks)\.(\d+)\.")


class SubjectError(RuntimeError):
    """A same-subject request that cannot be made as asked; the message says what to do instead."""


def record_key(request: Request) -> str:
    """Which first image a record belongs to: its settled request, progress settings and its own subject left
    out (any image can be the first of a subject: "More like this" starts from an image made alone)."""
    text = request.model_copy(update={"preview_every": 0}).model_dump_json(exclude={"init_image", "subject"})
    return hashlib.sha256(text.encode()).hexdigest()


class KeyValueRecord:
    """The self-attention keys and values of one first image, per layer, in the order the UNet computed them."""

    def __init__(self, key: str) -> None:
        self.key = key
        self.layers: dict[str, list[list[Any]]] = {}
        self.mode = "record"
        self._position: dict[str, int] = {}

    def start_sharing(self) -> None:
        self.mode = "share"
        self._position = {}

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for calls in self.layers.values() for pair in calls for t in pair)

    def keys(self, layer: str, key):
        if self.mode == "record":
            self.layers.setdefault(layer, []).append([key, None])
            return key
        return _joined(key, self._recorded(layer)[0])

    def values(self, layer: str, value):
        if self.mode == "record":
            self.layers[layer][-1][1] = value
            return value
        recorded = self._recorded(layer)[1]
        self._position[layer] = self._position.get(layer, 0) + 1
        return _joined(value, recorded)

    def _recorded(self, layer: str) -> list[Any]:
        calls = self.layers.get(layer, [])
        position = self._position.get(layer, 0)
        if position >= len(calls):
            raise SubjectError(
                "shared attention needs the same steps, sampler and guidance as the first image of the subject"
            )
        return calls[position]


def _joined(own, recorded):
    """Own keys (or values) followed by the first image's along the token axis, batch rows matched up."""
    import torch

    if recorded.shape[0] != own.shape[0]:
        recorded = recorded[-1:].expand(own.shape[0], -1, -1)  # a guided batch against an unguided record
    return torch.cat([own, recorded.to(own.dtype)], dim=1)


class _AttentionView:
    """An Attention module whose `to_k`/`to_v` go through the record: the processor runs unchanged on it."""

    def __init__(self, attention, layer: str, record: KeyValueRecord) -> None:
        self._attention = attention
        self.to_k = lambda states: record.keys(layer, attention.to_k(states))
        self.to_v = lambda states: record.values(layer, attention.to_v(states))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._attention, name)


class SharedSelfAttention:
    """A diffusers attention processor for a self-attention layer: records its keys and values, or appends the
    recorded ones to its own, around the processor it replaces (whose arithmetic is kept as it is)."""

    def __init__(self, base, layer: str, record: KeyValueRecord) -> None:
        self.base, self.layer, self.record = base, layer, record

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, **kwargs):
        if encoder_hidden_states is not None:
            return self.base(attn, hidden_states, encoder_hidden_states, attention_mask, temb, **kwargs)
        view = _AttentionView(attn, self.layer, self.record)
        return self.base(view, hidden_states, None, attention_mask, temb, **kwargs)


@contextlib.contextmanager
def shared_attention(unet, record: KeyValueRecord) -> Iterator[None]:
    """The UNet's self-attention layers go through `record` while inside; its own processors come back after."""
    saved = dict(unet.attn_processors)
    unet.set_attn_processor(
        {
            name: SharedSelfAttention(processor, name, record) if name.endswith("attn1.processor") else processor
            for name, processor in saved.items()
        }
    )
    try:
        yield
    finally:
        unet.set_attn_processor(saved)


def record_bytes(unet, request: Request, unet_calls: int, element_size: int) -> int:
    """What recording the first image's keys and values takes: every self-attention layer, every UNet call."""
    levels = len(unet.config.block_out_channels)
    total = 0
    guided = 2 if request.guidance > 1 and unet.config.time_cond_proj_dim is None else 1
    for name, module in unet.named_modules():
        if not name.endswith("attn1"):
            continue
        match = _LEVEL.match(name)
        level = levels - 1 if match is None else int(match[2])
        if match is not None and match[1] == "up_blocks":
            level = levels - 1 - level
        side = LATENT_SCALE * 2**level
        tokens = math.ceil(request.height / side) * math.ceil(request.width / side)
        total += 2 * guided * tokens * module.to_k.out_features
    return total * unet_calls * element_size


def adapter_file(subject: Subject, unet) -> Path | None:
    """The IP-Adapter weight file to use: the subject's own, else the family's published one when it is in the
    local hub cache (never downloaded here); None when there is none."""
    if subject.adapter:
        path = Path(subject.adapter).expanduser()
        return path if path.is_file() else None
    published = PUBLISHED_ADAPTERS.get(unet.config.cross_attention_dim)
    if published is None:
        return None
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(*published)
    return Path(found) if isinstance(found, str) else None


def choose(subject: Subject, loaded: Loaded, request: Request) -> str:
    """The method for `request` on `loaded` (its method when one is asked for and can run; SubjectError if not)."""
    unet = getattr(loaded.pipe, "unet", None)
    settable = unet is not None and hasattr(unet, "set_attn_processor") and not loaded.light
    fast_path = request.quality == "fast" and loaded.plan.runtime == "openvino"
    if subject.method == "shared-attention":
        if not settable or subject.image is not None:
            raise SubjectError(
                "shared attention needs a UNet whose attention processors can be set and a generated first "
                "image: use --method init-image (or ip-adapter for a picture)"
            )
        return "shared-attention"
    if subject.method == "ip-adapter":
        if unet is None or loaded.light or adapter_file(subject, unet) is None:
            raise SubjectError(
                "no IP-Adapter for this model on this machine (published for SD 1.5 and SDXL, not SD 2.x such "
                "as SD-Turbo): give its weight file, or use --method init-image"
            )
        return "ip-adapter"
    if subject.method == "init-image":
        return "init-image"
    if subject.image is not None:
        has_adapter = unet is not None and not loaded.light and adapter_file(subject, unet) is not None
        return "ip-adapter" if has_adapter else "init-image"
    if not settable or fast_path:
        return "init-image"
    calls = request.steps * getattr(loaded.pipe.scheduler, "order", 1)
    size = 2 if loaded.plan.autocast or loaded.plan.dtype != "float32" else 4
    return "shared-attention" if record_bytes(unet, request, calls, size) <= SHARED_BUDGET_BYTES else "init-image"


def reference_png(runner: Runner, subject: Subject, loaded: Loaded, emit: Emit, cancelled) -> bytes:
    """The reference picture: the user's, or the first image (kept from when it was made, else made again)."""
    if subject.image is not None:
        return subject.image
    key = record_key(subject.reference)
    kept = loaded.extras.get("subject")
    if kept is not None and kept.key == key and getattr(kept, "png", None) is not None:
        return kept.png
    emit({"kind": "loading", "message": "Making the first image of the subject again (its reference)"})
    return runner.generate(subject.reference, emit=_steps_hidden(emit), cancelled=cancelled).images[0]


def ensure_record(runner: Runner, subject: Subject, loaded: Loaded, emit: Emit, cancelled) -> KeyValueRecord:
    """The first image's recorded keys and values, made again when this engine no longer holds them."""
    key = record_key(subject.reference)
    kept = loaded.extras.get("subject")
    if not (isinstance(kept, KeyValueRecord) and kept.key == key and kept.layers):
        emit({"kind": "loading", "message": "Making the first image of the subject again (its attention is shared)"})
        first = subject.reference.model_copy(update={"subject": Subject(method="shared-attention")})
        made = runner.generate(first, emit=_steps_hidden(emit), cancelled=cancelled)
        kept = runner.loaded.extras.get("subject") if runner.loaded else None
        if not (isinstance(kept, KeyValueRecord) and kept.key == record_key(made.request)):
            raise SubjectError("the first image of the subject could not be recorded")
        kept.key = key  # found by the reference as it is named (an image's stored request may leave defaults out)
    return kept


def _steps_hidden(emit: Emit) -> Emit:
    """The reference's own progress: its messages, not its steps (the job's step count stays the job's)."""
    return lambda event: None if event.get("kind") in ("step", "start", "preview") else emit(event)


def picture(png: bytes):
    """The reference as RGB pixels (it was read and checked when the request was made: see `Subject.image`)."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(png)) as opened:
            return opened.convert("RGB")
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise SubjectError(f"the reference picture ({len(png):,} bytes) is no image that can be read ({exc})") from None


@contextlib.contextmanager
def applied(
    loaded: Loaded, pipe, request: Request, kwargs: dict[str, Any], reference: Any, index: int
) -> Iterator[None]:
    """Inside, `pipe` makes image `index` of `request` keeping its subject: shared attention recording (the first
    image of a subject) or sharing, or the IP-Adapter with the reference picture in `kwargs`. A plain request
    leaves no adapter loaded."""
    subject = request.subject
    method = None if subject is None or subject.plugin else subject.method
    if method != "ip-adapter" and loaded.extras.get("ip_adapter"):
        loaded.pipe.unload_ip_adapter()
        loaded.extras["ip_adapter"] = None
    if method == "shared-attention":
        recording = subject.anchor and index == 0
        if recording:
            record = KeyValueRecord(record_key(request))
            loaded.extras["subject"] = None  # one record at a time: the old one goes before the new one grows
        else:  # a later image, or the anchor request's own further images
            record = reference if reference is not None else loaded.extras["subject"]
            record.start_sharing()
        with shared_attention(pipe.unet, record):
            yield
        if recording:
            record.start_sharing()
            loaded.extras["subject"] = record
        return
    if method == "ip-adapter":
        _load_adapter(loaded, adapter_file(subject, loaded.pipe.unet))
        loaded.pipe.set_ip_adapter_scale(subject.strength)
        kwargs["ip_adapter_image"] = picture(reference)
    yield


def _load_adapter(loaded: Loaded, weights: Path | None) -> None:
    if weights is None:
        raise SubjectError("the IP-Adapter weights are gone from this machine")
    if loaded.extras.get("ip_adapter") == str(weights):
        return
    if loaded.extras.get("ip_adapter"):
        loaded.pipe.unload_ip_adapter()
    try:
        loaded.pipe.load_ip_adapter(
            str(weights.parent.parent), subfolder=weights.parent.name, weight_name=weights.name, local_files_only=True
        )
    except Exception as exc:
        loaded.extras["ip_adapter"] = None
        raise SubjectError(f"the IP-Adapter {weights} could not be loaded: {exc}") from exc
    loaded.extras["ip_adapter"] = str(weights)


def anchor_png(loaded: Loaded, request: Request, png: bytes) -> None:
    """Keep the first image's PNG with its record, so init-image and ip-adapter need not make it again."""
    if request.subject is None or not request.subject.anchor:
        return
    kept = loaded.extras.get("subject")
    if not isinstance(kept, KeyValueRecord) or kept.key != record_key(request):
        kept = KeyValueRecord(record_key(request))
        kept.start_sharing()
        loaded.extras["subject"] = kept
    kept.png = png

