"""PNG files as other programs write them, made with Pillow (a PNG writer independent of ours)."""

from __future__ import annotations

import io
import json

from PIL import Image
from PIL.PngImagePlugin import PngInfo

A1111_TEXT = (
    "masterpiece, a lighthouse at dusk, <lora:film:0.8>\n"
    "Negative prompt: lowres, bad anatomy\n"
    "Steps: 20, Sampler: DPM++ 2M Karras, CFG scale: 7, Seed: 1234567890, Size: 512x768, "
    'Model hash: 6ce0161689, Model: v1-5-pruned-emaonly, Lora hashes: "film: 0a1b2c3d", Version: v1.6.0'
)

COMFYUI_GRAPH = {
    "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sd_xl_base_1.0.safetensors"}},
    "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 1024, "height": 1024, "batch_size": 1}},
    "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a red fox in snow", "clip": ["4", 1]}},
    "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "blurry, watermark", "clip": ["4", 1]}},
    "3": {
        "class_type": "KSampler",
        "inputs": {
            "seed": 8566257,
            "steps": 25,
            "cfg": 8.0,
            "sampler_name": "euler",
            "scheduler": "normal",
            "denoise": 1.0,
            "model": ["4", 0],
            "positive": ["6", 0],
            "negative": ["7", 0],
            "latent_image": ["5", 0],
        },
    },
}

COMFYUI_WORKFLOW = {
    "nodes": [
        {"id": 6, "type": "CLIPTextEncode", "widgets_values": ["a red fox in snow"]},
        {"id": 7, "type": "CLIPTextEncode", "widgets_values": ["blurry, watermark"]},
        {"id": 3, "type": "KSampler", "widgets_values": [8566257, "fixed", 25, 8, "euler", "normal", 1]},
    ]
}


def png_bytes(width: int = 64, height: int = 48, texts: dict[str, str] | None = None) -> bytes:
    """A small gradient PNG, with Pillow-written text chunks."""
    image = Image.new("RGB", (width, height))
    image.putdata([(x * 4 % 256, y * 5 % 256, (x + y) % 256) for y in range(height) for x in range(width)])
    info = PngInfo()
    for key, value in (texts or {}).items():
        info.add_text(key, value)
    buffer = io.BytesIO()
    image.save(buffer, "PNG", pnginfo=info)
    return buffer.getvalue()


def a1111_png(text: str = A1111_TEXT) -> bytes:
    return png_bytes(32, 48, {"parameters": text})


def comfyui_png(graph: dict | None = COMFYUI_GRAPH, workflow: dict | None = COMFYUI_WORKFLOW) -> bytes:
    texts = {}
    if graph is not None:
        texts["prompt"] = json.dumps(graph)
    if workflow is not None:
        texts["workflow"] = json.dumps(workflow)
    return png_bytes(64, 64, texts)


def pixels(png: bytes) -> bytes:
    with Image.open(io.BytesIO(png)) as image:
        return image.convert("RGB").tobytes()
