"""OpenVINO's runtime for the fast path, without torch: a module's IR read, compiled per input shape, and run on
numpy arrays; the cache folder's safe writes. Both the torch-hosted fast path (openvino_backend.py) and the
torch-free worker (ov_pipeline.py) run their modules through `Converted`.

OpenVINO's conversion sends usage reports to Google Analytics unless the user opted out; importing this module
keeps its telemetry package from loading at all (OpenVINO then uses its built-in no-op stub), so nothing leaves
the machine. Import this module before anything else imports openvino.
"""

from __future__ import annotations

import functools
import json
import shutil
import sys
from pathlib import Path
from typing import Any

sys.modules.setdefault("openvino_telemetry", None)  # a None entry makes `import openvino_telemetry` fail

import numpy as np  # noqa: E402
import openvino as ov  # noqa: E402

from dreamtray.engine.settings import COMPILED_STAMP  # noqa: E402


class CacheError(RuntimeError):
    """A cached conversion that cannot be read or compiled; the entry has been removed."""


KEEP_SHAPES = 4
"""Compiled copies kept per module: those of the shapes used last (the hotkey's size, the prompt box's 256 px
previews, a series' size, ...); older ones are removed when another shape is compiled."""
UNUSED_DAYS = 30
"""A compiled copy not used for this long is removed too."""
USED = COMPILED_STAMP
"""The file in a shape's folder whose modification time says when the shape was last compiled or read."""
CACHE_MODE = "OPTIMIZE_SIZE"
"""OpenVINO's CACHE_MODE for compiled copies: OPTIMIZE_SIZE leaves the weights out of the copy and maps the IR's
instead (a few MB per shape, no second copy of the weights on disk), where OPTIMIZE_SPEED would keep a copy of the
weights per shape; measured as fast to read back (docs/fast-path.md, bench/torchfree.py)."""


F32_MIN_MEMORY = 12 * 2**30
"""The memory (RAM, or the engine's limit) from which f32 is asked for: f32 holds the weights at twice bf16's size
(SD-Turbo's shape peaked at 9.4 GiB after a restart in f32, 7.5 GiB in bf16), so an 8 GB machine keeps bf16."""


def precision_for(flags: set[str], memory: int) -> str | None:
    """The inference precision to ask of OpenVINO's CPU plugin for these /proc/cpuinfo flags and this much memory:
    f32 on a CPU with AVX512-BF16 but no AMX (OpenVINO's default there, bf16, took 1.4-1.7x the CPU time of f32
    for SD-Turbo's and SDXS's UNets: docs/fast-path.md) with `F32_MIN_MEMORY` or more; None (OpenVINO's own
    choice) otherwise, such as on a CPU with AMX, where bf16 is the fast one."""
    if "amx_bf16" in flags or "avx512_bf16" not in flags or memory < F32_MIN_MEMORY:
        return None
    return "f32"


@functools.cache
def inference_precision() -> str | None:
    """`precision_for` this machine (OpenVINO's default where /proc/cpuinfo cannot be read)."""
    from dreamtray.engine.server.hardware import cpu_flags
    from dreamtray.engine.server.memory import budget

    return precision_for(cpu_flags(), budget().ceiling)


def shape_folder(compiled_dir: Path, shapes: list[tuple[int, ...]]) -> Path:
    """Where the compiled copy of one shape goes: a folder per shape (`1x4x64x64-1-1x77x1024`), so that a shape
    no longer used can be found and removed."""
    return compiled_dir / "-".join("x".join(str(side) for side in shape) or "0" for shape in shapes)


def mark_used(folder: Path) -> None:
    stamp = folder / USED
    if stamp.is_symlink():
        remove_or_raise(stamp)
    stamp.touch()


def prune_compiled(compiled_dir: Path, now: float | None = None) -> list[Path]:
    """Remove the compiled copies of `compiled_dir` beyond the `KEEP_SHAPES` used last or unused for
    `UNUSED_DAYS`, and loose files there (the single folder of every shape that earlier versions wrote).
    Returns what was removed; what cannot be removed now is left for the next time."""
    import time

    limit = (time.time() if now is None else now) - UNUSED_DAYS * 86400
    shapes, removed = [], []
    for entry in compiled_dir.iterdir():
        if entry.is_dir() and not entry.is_symlink():
            try:
                shapes.append(((entry / USED).stat().st_mtime, entry))
            except OSError:
                shapes.append((0.0, entry))  # being written by another process, or left half-done
        elif remove_entry(entry) is None:
            removed.append(entry)
    shapes.sort(reverse=True)
    for rank, (used, entry) in enumerate(shapes):
        if (rank >= KEEP_SHAPES or used < limit) and used and remove_entry(entry) is None:
            removed.append(entry)
    return removed


class Converted:
    """One module's IR in the cache (or in a folder exported by optimum-intel: `xml` and `compiled_dir` then name
    its file and where its compiled programs go), compiled for each input shape on first use."""

    def __init__(
        self, folder: Path, remove_broken: bool = True, xml: str = "model.xml", compiled_dir: Path | None = None
    ):
        self.folder, self.remove_broken, self.xml = folder, remove_broken, xml
        self.compiled_dir = compiled_dir or folder / "compiled"
        self.core = ov.Core()
        if folder.is_symlink():
            raise self._broken(OSError("it is a symbolic link, which the cache never writes through"))
        self._model: Any = None
        model = self.model
        self.compiled: dict[tuple, Any] = {}
        self.cache_mode = CACHE_MODE
        self.weights = (folder / xml).with_suffix(".bin")
        # What each input takes: an export may want an int64 timestep of shape (1,) where ours takes a float scalar.
        self.inputs = [(port.get_element_type().to_dtype(), port.get_partial_shape().rank) for port in model.inputs]
        self.outputs = [port.get_partial_shape() for port in model.outputs]

    @property
    def model(self) -> Any:
        """The module's IR: held until a compile, read from its file again when one is asked for after it (a
        compiled program holds its own copy of the weights; the IR's, mapped from the file, would stay in memory
        beside it: 1.1 GiB for SDXS's modules)."""
        if self._model is None:
            try:
                self._model = self.core.read_model(self.folder / self.xml)
            except Exception as exc:
                raise self._broken(exc) from exc
        return self._model

    def _broken(self, exc: Exception) -> CacheError:
        """The error for an entry that cannot be read or compiled, removed unless `remove_broken` is off (then
        the full load finds it again, removes it and says so)."""
        removed = ""
        if self.remove_broken:
            why_not = remove_entry(self.folder)
            removed = "; removed it" if why_not is None else f"; could not remove it ({why_not}): delete it by hand"
        lines = [line for line in str(exc).splitlines() if line.strip()] or [type(exc).__name__]
        return CacheError(f"the OpenVINO cache at {self.folder} could not be read ({lines[-1].strip()}){removed}")

    def _shape(self, index: int, shape: tuple[int, ...]) -> tuple[int, ...]:
        rank = self.inputs[index][1]
        return (1,) if shape == () and rank.is_static and rank.get_length() == 1 else shape

    def compile(self, shapes: list[tuple[int, ...]]):
        """The program for these input shapes (static shapes run 5-10% faster than dynamic ones), read from its
        compiled copy on disk when there is one (`shape_folder`); copies of shapes not used lately are pruned."""
        shapes = [self._shape(index, tuple(shape)) for index, shape in enumerate(shapes)]
        key = tuple(shapes)
        if key not in self.compiled:
            model = self.model.clone()
            model.reshape({index: ov.PartialShape(list(shape)) for index, shape in enumerate(shapes)})
            try:
                folder = real_folder(shape_folder(real_folder(self.compiled_dir), shapes))
                config = {"CACHE_DIR": str(folder), "PERFORMANCE_HINT": "LATENCY", "CACHE_MODE": self.cache_mode}
                if precision := inference_precision():
                    config["INFERENCE_PRECISION_HINT"] = precision
                if self.cache_mode == "OPTIMIZE_SIZE":  # where a copy without weights finds them (else: compiled again)
                    config["WEIGHTS_PATH"] = str(self.weights)
                self.compiled[key] = self.core.compile_model(model, "CPU", config)
            except Exception as exc:
                raise self._broken(exc) from exc
            finally:
                self._model = None
            mark_used(folder)
            prune_compiled(self.compiled_dir)
        return self.compiled[key]

    def run(self, *inputs: np.ndarray) -> list[np.ndarray]:
        """The module's outputs for these inputs (each cast to the type and rank its IR input takes)."""
        arrays = [
            np.asarray(array).astype(dtype, copy=False).reshape(self._shape(index, np.shape(array)))
            for index, (array, (dtype, _)) in enumerate(zip(inputs, self.inputs))
        ]
        program = self.compile([array.shape for array in arrays])
        request = program.create_infer_request()
        request.infer(arrays, share_inputs=True)
        return [request.get_output_tensor(i).data.copy() for i in range(len(program.outputs))]


def remove_entry(path: Path) -> str | None:
    """Remove a cache entry: a folder with all it holds, or a link or file in its place (never what a link points
    to). None once it is gone; else why it is not, in words."""
    try:
        if path.is_symlink() or path.is_file():
            path.unlink()
        elif path.exists():
            shutil.rmtree(path)
    except OSError as exc:
        return exc.strerror or type(exc).__name__
    return None


def remove_or_raise(path: Path) -> None:
    if (why_not := remove_entry(path)) is not None:
        raise CacheError(f"the OpenVINO cache at {path} could not be removed ({why_not}): delete it by hand")


def real_folder(path: Path) -> Path:
    """`path` as a real folder of the cache: a symbolic link (or a file) in its place is removed first, so that
    nothing is written where it points."""
    if path.is_symlink() or path.is_file():
        remove_or_raise(path)
    path.mkdir(parents=True, exist_ok=True)
    return path


EXPORT_XML = "openvino_model.xml"
"""The IR of each module in optimum-intel's export layout (`optimum-cli export openvino`)."""


def read_export(folder: Path, compiled_root: Path, decoder: Path | None = None, cls: type[Converted] = Converted):
    """The UNet, text encoder and image decoder of a folder in optimum-intel's export layout, as they are (their
    compiled programs under `compiled_root`: the export may sit in a read-only or shared cache), and the factor
    the decoder's latents are multiplied by. `decoder`, a folder whose `vae_decoder/` is a TAESD decoder in the
    same layout (a preset's ready-made one), draws the images in place of the export's own VAE decoder."""

    def read(name: str, where: Path = folder) -> Converted:
        return cls(where / name, False, EXPORT_XML, compiled_root / ("taesd_" if where != folder else "") / name)

    config_file = (decoder or folder) / "vae_decoder" / "config.json"
    config = json.loads(config_file.read_text(encoding="utf-8")) if config_file.is_file() else {}
    # A TAESD decoder takes the UNet's latents as they are (scaling factor 1); a full VAE divides by its own.
    scale = 1.0 / float(config.get("scaling_factor", 1.0 if decoder is not None else 0.18215))
    return read("unet"), read("text_encoder"), read("vae_decoder", decoder or folder), scale


def compile_in_turn(work: list[tuple[Converted, list[tuple[int, ...]]]]) -> None:
    """Compile (or read from the compiled cache) each module for its shapes, one after the other: as fast as side
    by side, and the memory of one module's IR at a time (SDXS's first image after a restart, from the compiled
    copies: 5.8 s either way, peak 4.29 GiB against 4.7-4.8 GiB side by side)."""
    for module, shapes in work:
        module.compile(shapes)
