"""Where a model comes from, and loading it: presets from the hub, local diffusers folders, single files.

`resolve_model()` is cheap and torch-free: it turns what the user wrote into a `ModelSource` and refuses
pickle checkpoints unless allowed. `load_pipeline()` imports diffusers and does the work, reusing the
standard Hugging Face cache and announcing a download's size and destination before it starts.
"""

from __future__ import annotations

import json
import os
import pickle
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

from dreamtray.engine.presets import PRESETS, Preset

PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin")
SINGLE_FILE_SUFFIXES = (".safetensors",) + PICKLE_SUFFIXES

LOCAL_DEFAULTS = Preset(
    name="local",
    hub_id=None,
    pipeline="StableDiffusionPipeline",
    native_size=512,
    steps=25,
    guidance=7.0,
    scheduler="",
    size_multiple=8,
    weights_gb=2.6,
    largest_part_gb=1.7,
    activation_gb=1.0,
    description="A model from a local folder or file, run with general Stable Diffusion settings.",
)
"""Settings for models that are no preset; native size is read from the model once it is loaded."""

HUB_ID = re.compile(r"(?![-.])[A-Za-z0-9_.-]{1,96}(?<![-.])/(?![-.])[A-Za-z0-9_.-]{1,96}(?<![-.])")
"""A hub model id as huggingface_hub accepts one (no `--` or `..` either, checked apart)."""
COMPONENT_LIBRARIES = ("diffusers", "transformers")
"""Where a model_index.json's components may come from (diffusers itself imports any module named there)."""


class ModelError(RuntimeError):
    """A model that cannot be found, trusted or loaded; the message tells the user the way on."""


@dataclass(frozen=True)
class ModelSource:
    """A resolved model: what it is called in metadata, where it lives, and its default settings."""

    name: str
    kind: Literal["hub", "folder", "single_file", "tiny"]
    location: str
    preset: Preset
    config: str | None = None
    """For single files: a diffusers folder or hub id holding the component configs (optional)."""


Emit = Callable[[dict[str, Any]], None]


def resolve_model(spec: str, *, allow_pickle: bool = False, single_file_config: str | None = None) -> ModelSource:
    """Turn a preset name, hub id, folder or file path into a ModelSource (no loading yet)."""
    if spec in PRESETS:
        preset = PRESETS[spec]
        kind = "tiny" if preset.hub_id is None else "hub"
        return ModelSource(spec, kind, preset.hub_id or spec, preset)
    path = Path(os.path.expanduser(spec))
    if path.suffix.lower() in SINGLE_FILE_SUFFIXES:
        if not path.is_file():
            raise ModelError(f"No model file at {path}.")
        if path.suffix.lower() in PICKLE_SUFFIXES and not allow_pickle:
            raise ModelError(
                f"{path.name} is a pickle checkpoint, and loading one can run code hidden in it. "
                "Use a .safetensors file instead, or, if you trust its source, set engine.allow_pickle = true."
            )
        return ModelSource(path.stem, "single_file", str(path.resolve()), LOCAL_DEFAULTS, single_file_config)
    if path.is_dir():
        if not (path / "model_index.json").is_file():
            raise ModelError(f"{path} is not a diffusers model folder (it has no model_index.json).")
        return ModelSource(path.name, "folder", str(path.resolve()), _folder_preset(path))
    if spec.count("/") == 1 and not spec.startswith((".", "/", "~")):
        if not HUB_ID.fullmatch(spec) or "--" in spec or ".." in spec:
            raise ModelError(
                f"{ascii(spec)} is neither a folder here nor a model id the Hugging Face hub can have: an id is "
                "owner/name of letters, digits, '-', '_' and '.' (as in stabilityai/sd-turbo)."
            )
        return ModelSource(spec, "hub", spec, LOCAL_DEFAULTS)
    known = ", ".join(PRESETS)
    raise ModelError(
        f"Unknown model {spec!r}: use a preset ({known}, auto), a hub id, a folder or a .safetensors file."
    )


def _folder_preset(folder: Path) -> Preset:
    index = folder / "model_index.json"
    try:
        pipeline = json.loads(index.read_text(encoding="utf-8")).get("_class_name", "StableDiffusionPipeline")
    except (OSError, ValueError, AttributeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else f"not a JSON object: {exc}"
        raise ModelError(f"{index} cannot be read ({reason}); the model folder is damaged: copy it again.") from None
    if not isinstance(pipeline, str) or not pipeline.isidentifier():
        pipeline_class(pipeline, f"The model in {folder}")  # raises, with the reason in words
    return replace(LOCAL_DEFAULTS, pipeline=pipeline)


def pipeline_class(name: object, where: str = "the model"):
    """The diffusers pipeline class that `name` (a model_index.json's `_class_name`) names; ModelError for a name
    of something else (a function, a module, a model class) or of a pipeline this diffusers lacks."""
    import diffusers

    plain = isinstance(name, str) and name.isidentifier() and not name.startswith("_")
    cls = getattr(diffusers, name, None) if plain else None
    base = diffusers.DiffusionPipeline
    if isinstance(cls, type) and issubclass(cls, base) and cls is not base:
        return cls
    if cls is None and plain and name.endswith("Pipeline"):
        raise ModelError(f"{where} needs {name}, which this version of diffusers has not; upgrade diffusers to run it.")
    raise ModelError(
        f"{where} names {ascii(name)[:80]} as its pipeline (`_class_name` in model_index.json), which is no "
        "diffusers pipeline: the folder is not a diffusers model, or its model_index.json was edited. "
        "Copy the model again from its source."
    )


def check_components(folder: Path, pipeline, where: str) -> None:
    """Refuse a model_index.json whose components are not [library, class] pairs of diffusers or transformers
    classes (diffusers would import any module it names and fail deep inside with an internal error)."""
    import importlib

    expected, _ = pipeline._get_signature_keys(pipeline)

    try:
        index = json.loads((folder / "model_index.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelError(f"{where}'s model_index.json cannot be read ({exc}); copy the model again.") from None
    for name, value in index.items() if isinstance(index, dict) else ():
        if name.startswith("_") or value == [None, None] or not (isinstance(value, list) or name in expected):
            continue  # a setting (requires_safety_checker), or a component left out
        library, cls = value if isinstance(value, list) and len(value) == 2 else (None, None)
        found = None
        if library in COMPONENT_LIBRARIES and isinstance(cls, str) and cls.isidentifier() and not cls.startswith("_"):
            found = getattr(importlib.import_module(library), cls, None)
        if not isinstance(found, type):
            raise ModelError(
                f"{where}'s model_index.json gives its component {ascii(name)[:60]} as {ascii(value)[:80]}, which is "
                f'no class of {" or ".join(COMPONENT_LIBRARIES)} (a component is ["diffusers", "ClassName"]). '
                "The folder is not a diffusers model, or the file was edited: copy the model again from its source."
            )


def pipeline_folder(
    source: ModelSource, cache_dir: Path, emit: Emit, cancelled: Callable[[], bool] = lambda: False
) -> Path | None:
    """The diffusers folder `source` loads from (a hub model not on disk yet is downloaded first; `cancelled` stops
    that download); None for a single-file checkpoint, which has none."""
    if source.kind == "tiny":
        from dreamtray.engine.server.tiny import ensure_tiny_folder

        return ensure_tiny_folder(cache_dir)
    if source.kind == "folder":
        return Path(source.location)
    if source.kind == "single_file":
        return None
    return Path(ensure_downloaded(source, emit, cancelled, cache_dir))


def load_pipeline(
    source: ModelSource, dtype: str, cache_dir: Path, emit: Emit, cancelled: Callable[[], bool] = lambda: False
) -> tuple[Any, Path | None]:
    """The pipeline for `source` in `dtype` on the CPU (placement on a device is the runner's job), and the
    folder it came from (`pipeline_folder`)."""
    import torch

    torch_dtype = getattr(torch, dtype)
    if source.kind == "single_file":
        return _load_single_file(source, torch_dtype), None
    folder = pipeline_folder(source, cache_dir, emit, cancelled)
    if folder is not None and is_openvino_export(folder) and not any(folder.glob("unet/*.safetensors")):
        raise ModelError(
            f"{source.name} holds only OpenVINO modules (a folder exported by optimum-intel), no torch weights: it "
            "runs quality fast on OpenVINO, with plain prompts and no LoRA or init image. Ask for quality fast, or "
            "use the model it was exported from."
        )
    name = "StableDiffusionPipeline" if source.kind == "tiny" else source.preset.pipeline
    variant = _variant_in(str(folder), source.preset.variant) if source.kind == "hub" else None
    where = f"The model in {folder}" if source.kind == "folder" else f"{source.name} (in {folder})"
    if source.kind != "tiny":
        name = _index_class_name(folder, name, where)
    cls = pipeline_class(name, where)
    if source.kind != "tiny":
        check_components(folder, cls, where)
    try:
        return cls.from_pretrained(folder, dtype=torch_dtype, variant=variant, local_files_only=True), folder
    except (OSError, ValueError, TypeError, AttributeError, KeyError, IndexError) as exc:
        if source.kind == "tiny":
            raise
        raise _load_error(exc, where) from exc


def _index_class_name(folder: Path, default: str, where: str) -> object:
    """The pipeline a downloaded or local folder's model_index.json names (a preset's own name otherwise)."""
    try:
        index = json.loads((folder / "model_index.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelError(f"{where}'s model_index.json cannot be read ({exc}); copy the model again.") from None
    return index.get("_class_name", default) if isinstance(index, dict) else None


def _load_error(exc: Exception, where: str) -> ModelError:
    """What went wrong loading a model's files, in words: a pickle refused, a file damaged, a config that does
    not fit."""
    chain, seen = exc, []
    while chain is not None and len(seen) < 10:
        seen.append(chain)
        chain = chain.__cause__ or chain.__context__
    if any(isinstance(e, pickle.UnpicklingError) for e in seen):
        file = re.search(r"'([^']+\.(?:bin|pt|pth|ckpt))'", str(exc))
        name = file.group(1) if file else "a weights file"
        return ModelError(
            f"{where}: {name} is a pickle file that holds more than tensors (code that would run when it is "
            "loaded), so it was not loaded. Use the model's .safetensors weights, or a copy from its source."
        )
    reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
    if isinstance(exc, OSError):
        return ModelError(
            f"{where} could not be loaded: {reason}. A file of it is damaged or incomplete "
            "(an interrupted copy or download?): copy it again, or delete it from the cache and run again."
        )
    return ModelError(
        f"{where} could not be loaded: its configuration does not describe a model diffusers can build ({reason}). "
        "The folder was edited or is for another program: copy the model again from its source."
    )


EXPORT_MODULES = ("unet", "text_encoder", "vae_decoder")
EXPORT_SMALL_FILES = ["*.json", "*.txt", "tokenizer*/*"]
"""What `fast` fetches of a model in optimum-intel's export layout besides the IR of the modules it runs (not the VAE
encoder): configs and tokenizer; no torch weights."""


def is_openvino_export(folder: Path, modules: tuple[str, ...] = EXPORT_MODULES) -> bool:
    """Whether `folder` is in optimum-intel's export layout (`optimum-cli export openvino`): model_index.json,
    and the UNet, text encoder and VAE decoder (`modules`) as `<module>/openvino_model.xml` (with their .bin)."""
    return (folder / "model_index.json").is_file() and all(
        (folder / module / "openvino_model.xml").is_file() for module in modules
    )


def export_folder(
    source: ModelSource,
    cache_dir: Path,
    emit: Emit,
    cancelled: Callable[[], bool],
    revision: str = "main",
    modules: tuple[str, ...] = EXPORT_MODULES,
) -> Path | None:
    """`source`'s folder when it is in optimum-intel's export layout, fetching only the small files and `modules`'
    IR of a hub model (which also tells whether it is one); None when it is not, or cannot be had now (the full
    load then says why)."""
    if source.kind == "folder":
        folder = Path(source.location)
    elif source.kind == "hub":
        from dreamtray.engine.server.download import DownloadCancelled

        patterns = [*EXPORT_SMALL_FILES, *(f"{module}/openvino_model.*" for module in modules)]
        try:
            folder = Path(ensure_downloaded(source, emit, cancelled, cache_dir, patterns, revision))
        except DownloadCancelled:
            raise
        except ModelError:
            return None
    else:
        return None
    return folder if is_openvino_export(folder, modules) else None


DECODER_FILES = ["*.json", "vae_decoder/openvino_model.*"]
"""What `fast` fetches of a ready-made TAESD decoder repo (FastSD CPU's layout: `vae_decoder/openvino_model.xml`)."""


def ready_made(
    source: ModelSource, cache_dir: Path, emit: Emit, cancelled: Callable[[], bool] = lambda: False
) -> tuple[Path, Path | None] | None:
    """A preset's ready-made OpenVINO model (`Preset.fast_files`): the export's folder and, where the preset names
    one, the TAESD decoder's; fetched through the same download code as every model (size and place said first,
    free space checked, resume, every file verified). With a TAESD decoder the export's own VAE decoder is not
    fetched; a decoder that cannot be had leaves that one drawing the images, and says so. None when the preset
    has no ready-made model, or it cannot be had now: the caller then goes the usual way (the torch weights)."""
    files = source.preset.fast_files
    if source.kind != "hub" or files is None:
        return None
    decoder = None
    if files.decoder is not None:
        try:
            decoder = Path(
                ensure_downloaded(
                    ModelSource(files.decoder, "hub", files.decoder, source.preset),
                    emit,
                    cancelled,
                    cache_dir,
                    DECODER_FILES,
                    files.decoder_revision,
                )
            )
        except ModelError as exc:
            reason = str(exc).splitlines()[0]
            emit({"kind": "warning", "message": f"The model's own VAE decoder draws the images: {reason}"})
        if decoder is not None and not (decoder / "vae_decoder" / "openvino_model.xml").is_file():
            message = f"{files.decoder} holds no vae_decoder/openvino_model.xml: the model's own VAE decoder draws"
            emit({"kind": "warning", "message": message})
            decoder = None
    modules = EXPORT_MODULES if decoder is None else tuple(m for m in EXPORT_MODULES if m != "vae_decoder")
    repo = ModelSource(files.repo, "hub", files.repo, source.preset)
    export = export_folder(repo, cache_dir, emit, cancelled, files.revision, modules)
    return None if export is None else (export, decoder)


def _variant_in(folder: str, variant: str | None) -> str | None:
    if variant and any(Path(folder).rglob(f"*.{variant}.safetensors")):
        return variant
    return None


def single_file_pipeline_name(path: str) -> str:
    """Which pipeline a single-file checkpoint is for, read from its tensor names."""
    if not path.endswith(".safetensors"):
        return "StableDiffusionPipeline"
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(path, framework="pt") as checkpoint:
            keys = list(checkpoint.keys())
    except SafetensorError as exc:
        raise ModelError(
            f"{path} is not a readable .safetensors file ({exc}): it may be empty, cut short or still downloading."
        ) from None
    if any(key.startswith("conditioner.embedders.1") for key in keys):
        return "StableDiffusionXLPipeline"
    if any("double_blocks." in key for key in keys):
        return "FluxPipeline"
    return "StableDiffusionPipeline"


def _load_single_file(source: ModelSource, torch_dtype):
    cls = pipeline_class(single_file_pipeline_name(source.location))
    kwargs = {"dtype": torch_dtype}
    if source.config:
        kwargs.update(config=source.config, local_files_only=os.path.isdir(source.config))
    from safetensors import SafetensorError

    try:
        return cls.from_single_file(source.location, **kwargs)
    except SafetensorError as exc:
        raise ModelError(
            f"{source.location} is not a readable .safetensors file ({exc}): it may be cut short or still downloading."
        ) from None
    except OSError as exc:
        raise ModelError(
            f"Could not load {Path(source.location).name}: diffusers needs the model's configuration files "
            f"from the Hugging Face hub or its cache ({exc}). Connect once, or set engine.single_file_config "
            "to a local diffusers folder of the same architecture."
        ) from exc


TAESD_FILES = ["config.json", "diffusion_pytorch_model.safetensors"]


def load_taesd(source: ModelSource, hub_id: str | None, dtype: str, cache_dir: Path, emit: Emit):
    """The TAESD decoder (AutoencoderTiny) for `source`'s latent space: from the hub like any model, or built for tiny.

    `hub_id` names it (the preset's, or the one for the pipeline's family); None where no TAESD is known.
    """
    import torch
    from diffusers import AutoencoderTiny

    torch_dtype = getattr(torch, dtype)
    if source.kind == "tiny":
        from dreamtray.engine.server.taesd import ensure_tiny_taesd_folder

        folder = ensure_tiny_taesd_folder(cache_dir)
    elif hub_id is None:
        raise ModelError(f"No TAESD decoder (TAESD) is known for {source.name}.")
    else:
        try:
            folder = ensure_downloaded(
                ModelSource(hub_id, "hub", hub_id, source.preset), emit, lambda: False, cache_dir, TAESD_FILES
            )
        except ModelError as exc:
            reason = str(exc.__cause__ or exc).splitlines()[0]
            raise ModelError(f"{hub_id} cannot be had now: {reason}") from exc
    return AutoencoderTiny.from_pretrained(folder, dtype=torch_dtype, local_files_only=True)


def ensure_downloaded(
    source: ModelSource,
    emit: Emit,
    cancelled: Callable[[], bool],
    cache_dir: Path,
    patterns: list[str] | None = None,
    revision: str = "main",
) -> str:
    """The local snapshot folder of a hub model at `revision`: the cached one, or a fresh download that explains
    itself."""
    from dreamtray.engine.server.download import DownloadError, ensure_snapshot

    patterns = patterns or _download_patterns(source.preset.variant)
    try:
        folder = ensure_snapshot(
            source.location, patterns, revision=revision, record_dir=cache_dir, emit=emit, cancelled=cancelled
        )
    except DownloadError as exc:
        raise ModelError(f"Cannot download {source.name}: {exc}\n{ALTERNATIVES}") from exc
    return str(folder)


def _download_patterns(variant: str | None) -> list[str]:
    weights = [f"*.{variant}.safetensors"] if variant else ["*.safetensors"]
    return ["*.json", "*.txt", "tokenizer*/*", *weights]


ALTERNATIVES = (
    "Other ways on: a model you already have (--model /path/to/folder or /path/to/model.safetensors), "
    "or the offline plumbing check (--model tiny)."
)
