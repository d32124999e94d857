#!/usr/bin/env bash
# The whole GPU run of dreamtray's benchmarks in one go, for a machine with an NVIDIA GPU and no network.
#
# That machine's python3 (CPython 3.12) must already hold CUDA torch, transformers, accelerate, safetensors,
# huggingface_hub, httpx, psutil, pillow, numpy, click, pluggy, filelock, anyio, h11 and annotated-doc.
# What dreamtray needs besides travels as wheels in the folder .whl/ at the repository root (ignored by git:
# add "/.whl/" to .git/info/exclude). Fill it once, on a machine with the network, from the repository root:
#     bash bench/gpu.sh fetch-wheels
# which downloads, without dependencies, the exact versions below for CPython 3.12 on manylinux x86-64 (~9 MB).
# Carry .whl/ with the working tree, then run there, from the repository root:
#     bash bench/gpu.sh OUT_DIR
# It writes OUT_DIR/gpu-engine.md, OUT_DIR/gpu-shapes.md and OUT_DIR/gpu-log.txt and ends within 8 minutes:
# each benchmark runs under its own time limit and writes each table as soon as it is made, so a run cut short
# keeps what it measured (shapes.py runs the SD-Turbo shape's torch.compile, cold and warm cache, before the
# SDXL-Turbo shape, so a cut loses SDXL's rows first). Model folders go to $DREAMTRAY_BENCH_CACHE (default
# /tmp/dreamtray-bench): a second run on the same machine skips the builds. The torch.compile figures use a fresh
# Inductor cache of their own each run (removed after), so "cold" is always cold.
set -euo pipefail
cd "$(dirname "$0")/.."  # the repository root

WHEELS=(
  diffusers==0.42.1
  fastapi==0.165.0 starlette==1.10.0 uvicorn==0.54.0 opentelemetry-api==1.45.2
  pydantic==2.14.4 pydantic_core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5 typing_extensions==4.16.0
  platformdirs==4.14.8 tomlkit==0.15.2
)

if [[ "${1:-}" == fetch-wheels ]]; then
  python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d .whl "${WHEELS[@]}"
  exit 0
fi

out="$(realpath -m "${1:-gpu-figures}")"  # (relative to the repository root)
mkdir -p "$out"
exec > >(tee "$out/gpu-log.txt") 2>&1
started=$SECONDS

site=/tmp/dreamtray-site
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$site" .whl/*.whl
ln -sfn "$PWD/host" "$site/dreamtray"  # the package without an install: host/ is dreamtray
export PYTHONPATH="$site" PYTHONUNBUFFERED=1 TRANSFORMERS_VERBOSITY=error
export DREAMTRAY_BENCH_CACHE="${DREAMTRAY_BENCH_CACHE:-/tmp/dreamtray-bench}"
export TORCHINDUCTOR_CACHE_DIR="$DREAMTRAY_BENCH_CACHE/inductor"

nvidia-smi --query-gpu=name,memory.total,memory.used,driver_version,clocks.max.sm --format=csv || true
python3 -c 'import torch, diffusers, transformers; print("torch", torch.__version__, "diffusers", diffusers.__version__, "transformers", transformers.__version__, "cuda", torch.cuda.is_available())'

# Both benchmarks stop their engine services on SIGTERM, so a timeout leaves no process holding GPU memory.
timeout 30 python3 bench/http_latency.py || echo "http_latency.py ended with status $?"
timeout 100 python3 bench/engine.py --repeats 10 --out "$out/gpu-engine.md" || echo "engine.py ended with status $?"
timeout $((450 - (SECONDS - started))) python3 bench/shapes.py --out "$out/gpu-shapes.md" || echo "shapes.py ended with status $?"
echo "GPU run took $((SECONDS - started)) s"
