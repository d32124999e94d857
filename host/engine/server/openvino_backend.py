"""The OpenVINO back end of `quality = fast`: a model's modules converted once, cached on disk, run compiled.

`openvino.convert_model` traces each torch module (UNet, text encoder, TAESD decoder) into OpenVINO's IR, saved
under the user's cache folder, one entry per model and module, with a key: the format, the OpenVINO and torch
versions, and a fingerprint of the module's weights. An entry whose key differs is converted again; one that cannot
be read is removed, and the caller falls back to torch with a warning. Nothing is written through a symbolic
link in the cache: a link in place of an entry, its `compiled/` folder or its lock is removed (never what it
points to), and the entry made again. Compiled programs are cached per shape
by OpenVINO itself (its CACHE_DIR, next to the IR), so a new process compiles in about 2 s instead of 12.

Running the compiled modules (`Converted`) is openvino_runtime.py's, which the torch-free worker uses too. OpenVINO's
conversion sends usage reports to Google Analytics unless the user opted out; importing this module (through
openvino_runtime) keeps its telemetry package from loading at all, so nothing leaves the machine. Import this
module, or openvino_runtime, before anything else imports openvino.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from dreamtray.atomic import staged_folder, write_atomically
from dreamtray.engine.server import openvino_runtime
from dreamtray.engine.server.openvino_runtime import (  # it keeps telemetry out
    compile_in_turn,
    ov,
    read_export,
    real_folder,
    remove_or_raise,
)

FORMAT = 1
"""Bumped whenever the conversion below changes, so every cached entry is converted again."""
Emit = Callable[[dict[str, Any]], None]


def weights_fingerprint(module: torch.nn.Module) -> str:
    """A cheap identity of a module's weights: names, shapes, dtypes and an even sample of each tensor's values."""
    digest = hashlib.sha256(type(module).__name__.encode())
    for name, tensor in sorted(module.state_dict().items()):
        tensor = tensor.detach()
        picks = torch.linspace(0, max(tensor.numel() - 1, 0), min(64, tensor.numel())).long()
        # Logical positions, whatever the memory format (channels-last or not), without copying the tensor.
        sample = tensor[torch.unravel_index(picks, tensor.shape)] if tensor.ndim else tensor.reshape(1)
        sample = sample.to(torch.float32).contiguous()
        digest.update(f"{name}{tuple(tensor.shape)}{tensor.dtype}".encode())
        digest.update(sample.numpy().tobytes())
    return digest.hexdigest()[:32]


def versions() -> dict[str, Any]:
    """The part of a key that says which conversion made an entry."""
    return {"format": FORMAT, "openvino": ov.get_version(), "torch": torch.__version__}


def cache_key(module: torch.nn.Module) -> dict[str, Any]:
    return {**versions(), "weights": weights_fingerprint(module)}


def files_stamp(folder: Path) -> str:
    """The identity of a model component's files on disk (names, sizes, modification times), read without
    loading them: how a new process knows an entry is still this model's before it loads any weights."""
    digest = hashlib.sha256()
    for path in sorted(path for path in folder.rglob("*") if path.is_file()):
        stat = path.stat()
        digest.update(f"{path.relative_to(folder)}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:32]


def folder_size(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())


class Converted(openvino_runtime.Converted):
    """A module's IR (openvino_runtime.Converted) called with torch tensors, as the diffusers pipeline does."""

    def __call__(self, *inputs: torch.Tensor) -> list[torch.Tensor]:
        return [torch.from_numpy(output) for output in self.run(*(tensor.detach().numpy() for tensor in inputs))]


def ensure_converted(
    folder: Path,
    module: torch.nn.Module,
    example: tuple[torch.Tensor, ...],
    label: str,
    emit: Emit,
    files: str | None = None,
) -> Converted:
    """The module's IR at `folder`: the cached one when its key matches, else converted now (once).

    `files` (the stamp of the module's files, where it has some) is kept in the key, so that a later process can
    use the entry without loading the module; it is not part of the match.
    """
    from filelock import FileLock

    key = cache_key(module)
    real_folder(folder.parent)
    with FileLock(lock_file(folder)):
        stored = {} if folder.is_symlink() else read_key(folder) or {}
        if {name: value for name, value in stored.items() if name != "files"} != key:
            stale = folder.exists() or folder.is_symlink()
            remove_or_raise(folder)
            why = "its cache is out of date" if stale else "once for this model"
            emit({"kind": "loading", "message": f"Converting the {label} to OpenVINO ({why})"})
            remove_or_raise(folder.with_name(folder.name + ".partial"))
            with staged_folder(folder) as staging:
                with torch.no_grad(), warnings.catch_warnings():
                    warnings.simplefilter("ignore", torch.jit.TracerWarning)  # shape checks traced as constants
                    converted = ov.convert_model(module, example_input=example)
                ov.save_model(converted, staging / "model.xml")
                _write_key(staging, key, files)
            size = folder_size(folder)
            shown = f"{size / 2**20:.0f} MiB" if size >= 2**20 else f"{size / 2**10:.0f} KiB"
            emit({"kind": "loading", "message": f"Converted the {label}: {shown} in {folder}"})
        elif stored.get("files") != files:
            _write_key(folder, key, files)
    return Converted(folder)


def fresh_entry(folder: Path, files: str) -> Converted | None:
    """The cached IR at `folder` when it was converted by this OpenVINO and torch from files that still carry
    the stamp `files`; None otherwise (the caller then loads the module and converts through ensure_converted)."""
    stored = None if folder.is_symlink() else read_key(folder)  # a link: the full load replaces it
    if not stored or stored.get("files") != files or any(stored.get(k) != v for k, v in versions().items()):
        return None
    return Converted(folder, remove_broken=False)


def lock_file(folder: Path) -> str:
    """The lock file of an entry (opening a lock truncates it: a link in its place is removed first)."""
    lock = folder.with_name(folder.name + ".lock")
    if lock.is_symlink():
        remove_or_raise(lock)
    return str(lock)


def _write_key(folder: Path, key: dict[str, Any], files: str | None) -> None:
    write_atomically(folder / "key.json", json.dumps({**key, **({"files": files} if files else {})}, indent=2))


def read_key(folder: Path) -> dict[str, Any] | None:
    """The key saved with an entry in `folder` (the IR's or int8's); None when there is none or it cannot be read."""
    try:
        return json.loads((folder / "key.json").read_text())
    except (OSError, ValueError):
        return None


class _UNet(torch.nn.Module):
    def __init__(self, unet):
        super().__init__()
        self.unet = unet

    def forward(self, sample, timestep, encoder_hidden_states):
        return self.unet(sample, timestep, encoder_hidden_states, return_dict=False)[0]


class _TextEncoder(torch.nn.Module):
    def __init__(self, encoder):
        super().__init__()
        self.encoder = encoder

    def forward(self, input_ids):
        return self.encoder(input_ids)[0]


class TaesdHalf(torch.nn.Module):
    """TAESD's `decode` or `encode` alone, as a module to convert."""

    def __init__(self, taesd, half: str):
        super().__init__()
        self.taesd, self.half = taesd, half

    def forward(self, tensor):
        return getattr(self.taesd, self.half)(tensor, return_dict=False)[0]


class StandIn(torch.nn.Module):
    """Takes a torch module's place in a diffusers pipeline: its config, a dtype and device, an OpenVINO forward."""

    def __init__(self, config: Any, converted: Converted):
        super().__init__()
        self.config = config
        self.converted = converted

    @property
    def dtype(self) -> torch.dtype:
        return torch.float32

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")


class OpenVinoUNet(StandIn):
    def forward(self, sample, timestep, encoder_hidden_states=None, return_dict=True, **_unused):
        timestep = torch.as_tensor(timestep, dtype=torch.float32).reshape(())
        (noise,) = self.converted(sample.float(), timestep, encoder_hidden_states.float())
        return (noise,)


class OpenVinoTextEncoder(StandIn):
    def forward(self, input_ids, attention_mask=None, **_unused):
        return tuple(self.converted(input_ids.to(torch.int64)))


class OpenVinoModules:
    """A model's UNet, text encoder and (once attached) TAESD decoder, converted and compiled on the CPU."""

    def __init__(self, unet: Converted, text_encoder: Converted, pipe=None):
        self.unet, self.text_encoder = unet, text_encoder
        self.taesd_decoder: Converted | None = None
        self.exported = False
        """Read from a folder exported by optimum-intel (`exported`): its `taesd_decoder` is the export's own VAE
        decoder, which takes the latents divided by `decode_scale`'s inverse; nothing is converted or quantized."""
        self.decode_scale = 1.0
        self.int8 = self.int8_decoder = False
        """Whether the UNet, and the TAESD decoder, are the int8 ones (openvino_int8.py)."""
        self.pipe = pipe
        """The torch pipeline they were converted from; None when read from the cache alone (see `cached`)."""

    @classmethod
    def convert(cls, pipe, root: Path, label: str, emit: Emit, model_folder: Path | None = None) -> OpenVinoModules:
        """The pipeline's UNet and text encoder from the cache, or converted now; `model_folder` (the diffusers
        folder the pipeline came from) lets a later process use them without loading the torch modules."""
        unet, encoder = pipe.unet, pipe.text_encoder
        latent = (1, unet.config.in_channels, unet.config.sample_size, unet.config.sample_size)
        window = pipe.tokenizer.model_max_length
        hidden = encoder.config.hidden_size

        def stamp(component: str) -> str | None:
            return files_stamp(model_folder / component) if model_folder else None

        converted_unet = ensure_converted(
            root / "unet",
            _UNet(unet).eval(),
            (torch.randn(latent), torch.tensor(999.0), torch.randn(1, window, hidden)),
            f"UNet of {label}",
            emit,
            stamp("unet"),
        )
        converted_encoder = ensure_converted(
            root / "text_encoder",
            _TextEncoder(encoder).eval(),
            (torch.zeros(1, window, dtype=torch.int64),),
            f"text encoder of {label}",
            emit,
            stamp("text_encoder"),
        )
        return cls(converted_unet, converted_encoder, pipe)

    @staticmethod
    def needs_conversion(pipe, root: Path) -> bool:
        """Whether `convert` would convert anything for `pipe` (an entry is missing or out of date)."""
        wanted = {"unet": _UNet(pipe.unet), "text_encoder": _TextEncoder(pipe.text_encoder)}
        for name, module in wanted.items():
            stored = read_key(root / name) or {}
            if {key: value for key, value in stored.items() if key != "files"} != cache_key(module.eval()):
                return True
        return False

    @classmethod
    def cached(cls, root: Path, model_folder: Path) -> OpenVinoModules | None:
        """The UNet and text encoder straight from the cache, without torch modules, when both entries are fresh
        for the files in `model_folder`; None when either is missing or stale."""
        unet = fresh_entry(root / "unet", files_stamp(model_folder / "unet"))
        encoder = fresh_entry(root / "text_encoder", files_stamp(model_folder / "text_encoder"))
        if unet is None or encoder is None:
            return None
        return cls(unet, encoder)

    @classmethod
    def exported(cls, folder: Path, compiled_root: Path, decoder: Path | None = None) -> OpenVinoModules:
        """The modules of a folder in optimum-intel's export layout (`is_export`), as they are; their compiled
        programs go under `compiled_root` (the export may sit in a read-only or shared cache). `decoder`, a folder
        whose `vae_decoder/` is a TAESD decoder in the same layout, draws the images in place of the export's own."""

        unet, text_encoder, image_decoder, scale = read_export(folder, compiled_root, decoder, Converted)
        modules = cls(unet, text_encoder)
        modules.taesd_decoder, modules.exported, modules.decode_scale = image_decoder, True, scale
        return modules

    def attach_taesd_decoder(self, taesd, root: Path, label: str, emit: Emit) -> None:
        """Convert (or read) the TAESD decoder for these latents, once."""
        if self.taesd_decoder is None:
            latent = (1, taesd.config.latent_channels, 64, 64)
            self.taesd_decoder = ensure_converted(
                root / "tiny_decoder",  # its first name, kept: caches already made stay valid
                TaesdHalf(taesd, "decode").eval(),
                (torch.randn(latent),),
                f"TAESD decoder of {label}",
                emit,
            )

    def pipeline(self):
        """A pipeline of the class converted from that runs the UNet and the text encoder on OpenVINO, sharing
        the rest (the VAE handed on by name: diffusers leaves out one not of the class's type, such as the
        AutoencoderTiny that SDXS has as its own)."""
        pipe = self.pipe
        fast = type(pipe).from_pipe(
            pipe,
            unet=OpenVinoUNet(pipe.unet.config, self.unet),
            text_encoder=OpenVinoTextEncoder(pipe.text_encoder.config, self.text_encoder),
            vae=pipe.vae,
        )
        fast.set_progress_bar_config(disable=True)
        return fast

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        (image, *_) = self.taesd_decoder(latents.float() * self.decode_scale)
        return image

    def compile_for(
        self, batch: int, latent_height: int, latent_width: int, channels: int, hidden: int, window: int
    ) -> None:
        """Compile now for one request's shapes, so that a broken cache shows before the job starts."""
        work = [
            (self.text_encoder, [(1, window)]),
            (self.unet, [(batch, channels, latent_height, latent_width), (), (batch, window, hidden)]),
        ]
        if self.taesd_decoder is not None:
            work.append((self.taesd_decoder, [(1, channels, latent_height, latent_width)]))
        compile_in_turn(work)


def light_pipeline(pipeline_cls, model_folder: Path, modules: OpenVinoModules):
    """A pipeline of `pipeline_cls` that runs on `modules` alone: no torch weights are loaded.

    Its UNet and text encoder are the OpenVINO stand-ins; its VAE is an empty shell (the configuration only, for
    the latent scale and the image processor): it serves `quality = fast`, whose images the TAESD decoder draws.
    There is no safety checker either: the pipeline runs it only on images the full VAE decodes.
    """
    import importlib

    from accelerate import init_empty_weights
    from diffusers import AutoencoderKL, AutoencoderTiny, UNet2DConditionModel
    from transformers import AutoConfig

    index = json.loads((model_folder / "model_index.json").read_text(encoding="utf-8"))
    vae_folder = model_folder / ("vae" if (model_folder / "vae").is_dir() else "vae_decoder")
    vae_config = AutoencoderKL.load_config(vae_folder)
    vae_class = AutoencoderTiny if vae_config.get("_class_name") == "AutoencoderTiny" else AutoencoderKL  # SDXS's

    def part(name: str):
        library, class_name = index[name]
        return getattr(importlib.import_module(library), class_name).from_pretrained(model_folder / name)

    with init_empty_weights():
        unet_config = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(model_folder / "unet")).config
        vae = vae_class.from_config(vae_config)
    pipe = pipeline_cls(
        vae=vae,
        text_encoder=OpenVinoTextEncoder(
            AutoConfig.from_pretrained(model_folder / "text_encoder"), modules.text_encoder
        ),
        tokenizer=part("tokenizer"),
        unet=OpenVinoUNet(unet_config, modules.unet),
        scheduler=part("scheduler"),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    modules.pipe = pipe
    return pipe
