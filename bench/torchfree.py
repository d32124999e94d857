"""The torch-free fast worker against the torch-hosted fast path, side by side in one run, on the presets'
ready-made OpenVINO repos (SDXS's and SD-Turbo's shapes with random weights, served from the loopback hub).

Run (under the heavy-run lock and a memory cgroup on a shared machine):
    python bench/torchfree.py [--shapes sdxs,sd-turbo] [--warm 5] [--out F]

For each shape the repos are built once (bench/openvino_exports.py) and served by the loopback hub under the preset's
repo names; a first process downloads them into a Hugging Face cache of the run's own. Then each way runs in fresh
processes, as the engine's worker does (the service's own start is not counted: bench/first_run.py measures the
whole command line):
- torch-hosted: runner.py (diffusers' pipeline around the OpenVINO modules; torch and diffusers imported);
- torch-free: torchfree.py (OpenVINO and numpy; no torch), with OpenVINO's compiled copies kept as OPTIMIZE_SPEED
  and as OPTIMIZE_SIZE (the engine's choice, openvino_runtime.CACHE_MODE; the torch-hosted row uses it too);
- openvino-genai's Text2ImagePipeline on the same export (when the package is installed; the engine does not use it).
Figures per way: the first image from a fresh worker with no compiled copies (process start to PNG: wall, CPU
seconds, peak RSS), the first image after a stop (a new process, compiled copies on disk), the warm image (median
of `--warm`, wall and CPU), the idle worker (RSS after the imports a ready worker does, holding no model), and the
disk the compiled copies take beside the download.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from first_run import cpu_description, repos_for
from measure import DEFAULT_CACHE, OUTPUT, hub_process, median, prepare_run, report, table

PROMPT = "a lighthouse on a cliff at dawn, oil painting"
WAYS = ("torch-hosted", "torch-free, OPTIMIZE_SPEED", "torch-free, OPTIMIZE_SIZE", "openvino-genai")


class GenaiRunner:
    """openvino-genai's C++ Text2ImagePipeline on the same export (its tokenizer converted to OpenVINO once, as
    optimum-intel writes it), with torch's generator and a step callback: measured, not used by the engine."""

    def __init__(self, model: str, cache: Path):
        import openvino_genai

        from dreamtray.engine.server import fast
        from dreamtray.engine.server.models import resolve_model

        self.genai = openvino_genai
        source = resolve_model(model)
        export, decoder = fast.export_of(source, cache / "download", lambda event: None)
        self.preset = source.preset
        self.folder = cache / "genai"
        if not self.folder.is_dir():
            self.folder.mkdir(parents=True)
            for part in export.iterdir():
                (self.folder / part.name).symlink_to(part)
            if decoder is not None:
                (self.folder / "vae_decoder").unlink()
                (self.folder / "vae_decoder").symlink_to(decoder / "vae_decoder")
            (self.folder / "tokenizer").unlink()
            shutil.copytree(export / "tokenizer", self.folder / "tokenizer")
            import openvino as ov
            from openvino_tokenizers import convert_tokenizer
            from transformers import CLIPTokenizer

            tokenizer = convert_tokenizer(CLIPTokenizer.from_pretrained(export / "tokenizer"))
            ov.save_model(tokenizer, self.folder / "tokenizer" / "openvino_tokenizer.xml")
        self.pipe = openvino_genai.Text2ImagePipeline(str(self.folder), "CPU", CACHE_DIR=str(cache / "genai-compiled"))

    def generate(self, request) -> None:
        size = 512
        self.pipe.generate(
            request.prompt,
            width=size,
            height=size,
            num_inference_steps=self.preset.steps,
            guidance_scale=self.preset.guidance,
            generator=self.genai.TorchGenerator(request.seed),
            callback=lambda step, steps, latent: False,
        )


def _rusage() -> tuple[float, float]:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


def disk_mb(folder: Path) -> float:
    """The bytes files take under `folder`, each once (a Hugging Face cache's snapshot links are not counted)."""
    files = [path for path in folder.rglob("*") if path.is_file() and not path.is_symlink()]
    return sum(path.stat().st_size for path in files) / 2**20


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def child(way: str, model: str, cache: str, launched: float, warm: int) -> dict:
    """One worker's life: imports, the first image, `warm` more; or (warm < 0) the ready worker's imports alone."""
    if "OPTIMIZE_" in way:
        from dreamtray.engine.server import openvino_runtime

        openvino_runtime.CACHE_MODE = way.split(", ")[1]
    from dreamtray.engine.server.torchfree import machine_without_torch
    from dreamtray.request import Request

    machine = machine_without_torch()
    if way == "openvino-genai":
        runner = GenaiRunner(model, Path(cache))
    elif way == "torch-hosted":
        from dreamtray.engine.server.runner import Runner

        runner = Runner(cache_dir=Path(cache), default_model=model, machine=machine)
        if warm < 0:
            runner.import_ahead()
            import dreamtray.engine.server.openvino_backend  # noqa: F401 (the ready worker's imports on OpenVINO)
    else:
        from dreamtray.engine.server.torchfree import TorchFreeRunner
        from dreamtray.engine.server.worker import _import_ahead

        runner = TorchFreeRunner(cache_dir=Path(cache), default_model=model, machine=machine)
        if warm < 0:
            _import_ahead(runner)
    if warm < 0:
        return {"idle_mb": _rss_mb(), "torch": "torch" in sys.modules}
    request = Request(prompt=PROMPT, seed=1, quality="fast", width=512, height=512)
    imported = time.time() - launched
    runner.generate(request)
    first_cpu, first_peak = _rusage()
    first = time.time() - launched
    walls, cpus = [], []
    for index in range(warm):
        start, cpu = time.perf_counter(), _rusage()[0]
        runner.generate(request.model_copy(update={"seed": 2 + index}))
        walls.append(time.perf_counter() - start)
        cpus.append(_rusage()[0] - cpu)
    return {
        "first_s": first,
        "imports_s": imported,
        "first_cpu": first_cpu,
        "first_peak_mb": first_peak,
        "warm_s": median(walls) if walls else None,
        "warm_cpu": median(cpus) if cpus else None,
        "peak_mb": _rusage()[1],
        "torch": "torch" in sys.modules,
    }


def run_child(way: str, model: str, cache: Path, env: dict, warm: int) -> dict:
    out = Path(tempfile.mkstemp(suffix=".json")[1])
    command = [sys.executable, __file__, "--child", way, model, str(cache), str(time.time()), str(warm), str(out)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
    if done.returncode:
        raise SystemExit(f"{way} failed:\n{done.stderr[-3000:]}")
    return json.loads(out.read_text())


def download(model: str, cache: Path, env: dict) -> None:
    code = (
        "import sys; from pathlib import Path; from dreamtray.engine.server import fast;"
        "from dreamtray.engine.server.models import resolve_model;"
        "print(fast.export_of(resolve_model(sys.argv[1]), Path(sys.argv[2]), lambda e: None))"
    )
    subprocess.run([sys.executable, "-c", code, model, str(cache)], env=env, check=True, timeout=900)


def shape_rows(name: str, scratch: Path, warm: int, weights: str) -> list[tuple]:
    repos = {} if Path(name).is_dir() else repos_for(name, DEFAULT_CACHE, weights)
    rows = []
    with hub_process(repos, lfs=".bin") as url:
        env = {k: v for k, v in os.environ.items() if not k.upper().endswith("_PROXY") and not k.startswith("HF_")}
        env.update(HF_ENDPOINT=url, HF_HOME=str(scratch / "hf"), HF_HUB_DISABLE_TELEMETRY="1")
        download(name, scratch / "download", env)
        download_mb = disk_mb(Path(name) if Path(name).is_dir() else scratch / "hf")
        for way in WAYS:
            if way == "openvino-genai" and importlib.util.find_spec("openvino_genai") is None:
                print("openvino-genai is not installed: its row is left out")
                continue
            cache = scratch / way.replace(" ", "").replace(",", "-")
            try:
                first = run_child(way, name, cache, env, warm)
            except SystemExit as exc:  # openvino-genai refuses some exports (a TAESD-type VAE decoder)
                last = str(exc).strip().splitlines()[-1]
                rows.append((name, way, f"cannot run this export: {last}", "", "", "", "", "", ""))
                print(rows[-1], flush=True)
                continue
            again = run_child(way, name, cache, env, 1)
            idle = run_child(way, name, cache, env, -1)
            disk = disk_mb(cache / "openvino") + disk_mb(cache / "genai-compiled")
            rows.append(
                (
                    name,
                    way,
                    f"{first['first_s']:.1f} s / {first['first_cpu']:.1f} cpu",
                    f"{again['first_s']:.1f} s / {again['first_cpu']:.1f} cpu ({again['imports_s']:.1f} s imports)",
                    f"{first['warm_s']:.2f} s / {first['warm_cpu']:.2f} cpu",
                    f"{idle['idle_mb']:.0f}",
                    f"{first['peak_mb']:.0f}, {again['peak_mb']:.0f}",
                    f"{disk:.0f} of {download_mb:.0f}",
                    "yes" if first["torch"] else "no",
                )
            )
            print(rows[-1], flush=True)
    return rows


def main() -> None:
    if sys.argv[1:2] == ["--child"]:
        way, model, cache, launched, warm, out = sys.argv[2:8]
        Path(out).write_text(json.dumps(child(way, model, cache, float(launched), int(warm))))
        return
    prepare_run()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", default="sdxs,sd-turbo", help="presets (sdxs, sd-turbo) or export folders")
    parser.add_argument("--warm", type=int, default=5)
    parser.add_argument("--weights", default="fp16", help="the exports' weights: fp16 or int8")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    if args.out:
        OUTPUT.append(args.out)
    report(f"# Torch-free fast worker, {cpu_description()}; load average before: {os.getloadavg()[0]:.1f}")
    scratch = Path(tempfile.mkdtemp(prefix="dreamtray-torchfree-"))
    try:
        rows = [
            row
            for name in args.shapes.split(",")
            for row in shape_rows(name, scratch / Path(name).name, args.warm, args.weights)
        ]
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    head = (
        "shape", "way", "first image, fresh worker", "first after a stop", "warm image", "idle worker MiB",
        "peak RSS MiB (fresh, after a stop)", "compiled MiB of download MiB", "torch imported",
    )  # fmt: skip
    table("The fast path's worker: torch-hosted against torch-free (wall / CPU seconds)", head, rows)


if __name__ == "__main__":
    main()
