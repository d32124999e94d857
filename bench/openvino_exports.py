"""Random-weight models in real shapes, exported in optimum-intel's layout: what a preset's ready-made OpenVINO repo
holds (docs/models.md), for benches that serve one from the loopback hub (bench/first_run.py).

`ensure_export("sd-turbo" | "sdxs", cache, weights)` builds the shape's diffusers folder (bench/architectures.py)
and converts it once with tests/openvino_export.py's builder (fp16 IR, or int8 weights as
`optimum-cli export openvino --weight-format int8` writes them), keeping both under the bench cache; later calls
(any process, any developer) reuse them. A lock file keeps two processes from building the same export at once:
converting SD-Turbo's UNet takes about 9 GB of RAM (run it under a memory cgroup on a shared machine).

The VAE encoder is left out: `quality = fast` never fetches it, so it changes no figure of the benches.

Run alone to build (and print sizes):  python bench/openvino_exports.py [--shapes sd-turbo,sdxs] [--weights fp16]
"""

from __future__ import annotations

import argparse
import fcntl
import shutil
import sys
import time
from pathlib import Path

from architectures import SEED, VERSION, ensure_folder
from measure import DEFAULT_CACHE

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

SHAPES = ("sd-turbo", "sdxs")


def export_path(name: str, cache_dir: Path, weights: str = "fp16") -> Path:
    return cache_dir / f"{name}-openvino-v{VERSION}-{weights}"


def ensure_export(name: str, cache_dir: Path, weights: str = "fp16") -> Path:
    """The `name`-shaped model in optimum-intel's export layout, built once (module docstring)."""
    folder = export_path(name, cache_dir, weights)
    if (folder / "model_index.json").is_file():
        return folder
    cache_dir.mkdir(parents=True, exist_ok=True)
    with open(cache_dir / f"{folder.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (folder / "model_index.json").is_file():  # another process built it while this one waited
            return folder
        from openvino_export import build_export

        return build_export(ensure_folder(name, cache_dir), folder, weights, vae_encoder=False)


def ensure_decoder_export(cache_dir: Path) -> Path:
    """A TAESD-shaped decoder (diffusers' AutoencoderTiny default, random weights) in the layout of a ready-made
    decoder repo such as rupeshs/taesd-ov (`vae_decoder/openvino_model.xml`), built once."""
    folder = cache_dir / f"taesd-openvino-v{VERSION}"
    if (folder / "vae_decoder" / "openvino_model.xml").is_file():
        return folder
    cache_dir.mkdir(parents=True, exist_ok=True)
    with open(cache_dir / f"{folder.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (folder / "vae_decoder" / "openvino_model.xml").is_file():
            import torch
            from diffusers import AutoencoderTiny
            from openvino_export import build_decoder_export

            shaped = cache_dir / f"taesd-shaped-v{VERSION}"
            torch.manual_seed(SEED)
            AutoencoderTiny().save_pretrained(shaped, safe_serialization=True)
            staging = folder.with_name(folder.name + ".partial")
            shutil.rmtree(staging, ignore_errors=True)
            build_decoder_export(shaped, staging).rename(folder)
    return folder


def folder_bytes(folder: Path) -> int:
    """The bytes of the files under `folder`, each once (links, such as a Hugging Face snapshot's, not followed)."""
    return sum(path.lstat().st_size for path in folder.rglob("*") if path.is_file() and not path.is_symlink())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", default=",".join(SHAPES), help="comma-separated: sd-turbo, sdxs")
    parser.add_argument("--weights", default="fp16", help="fp16 or int8")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    args = parser.parse_args()
    for name in args.shapes.split(","):
        started = time.perf_counter()
        folder = ensure_export(name, args.cache, args.weights)
        modules = {part.name: folder_bytes(part) / 1e9 for part in sorted(folder.iterdir()) if part.is_dir()}
        sizes = ", ".join(f"{part} {size:.2f}" for part, size in modules.items() if size >= 0.005)
        print(
            f"{name} ({args.weights}): {time.perf_counter() - started:.0f} s, {folder_bytes(folder) / 1e9:.2f} GB "
            f"({sizes} GB) at {folder}"
        )


if __name__ == "__main__":
    main()
