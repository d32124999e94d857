"""Prompt encoding and style files: what A1111 syntax and long prompts cost, and how many styles load.

Run:  python bench/prompts.py [--repeats 5] [--shapes tiny,sd-turbo] [--out figures.md]

1. Styles: the A1111 styles.csv files of the tests (tests/style_files.py, the shapes found in the wild) loaded
   by dreamtray, against the count of a reference reader that follows A1111's own code.
2. Encoding: the text embeddings of one prompt, on the tiny model and on SD-Turbo's text encoder (OpenCLIP
   ViT-H/14's text tower, 340 M parameters, random weights in its exact shape: bench/architectures.py),
   measured side by side in one run (alternating, median of `--repeats`):
   - plain: diffusers' own `encode_prompt` of a short plain prompt (what a pipeline does by itself);
   - through `dreamtray.engine.server.prompts.encode` (compel): the same prompt with weights, with a
     down-weighted `[term]`, with BREAK, and a 300-token prompt; each as ms and as a ratio to plain.
   Only the text encoder runs: the UNet's cost per step is the same for any prompt of the same token count.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from measure import OUTPUT, median, prepare_run, quiet_progress_bars, report, seconds, table

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

PLAIN = "a lighthouse on a cliff at dawn, oil painting, warm light, calm sea"
CASES = {
    "weighted (a:1.3), (b)": "a (lighthouse:1.3) on a cliff at dawn, (oil painting), warm light, calm sea",
    "down-weighted [b]": "a lighthouse on a cliff at dawn, [oil painting], warm light, calm sea",
    "BREAK (2 chunks)": "a lighthouse on a cliff at dawn BREAK oil painting, warm light, calm sea",
    "300 tokens (4 chunks)": ", ".join(f"detail {i:03d}" for i in range(30)),
    "300 tokens, weighted": ", ".join(f"(detail {i:03d}:1.1)" for i in range(30)),
}


def style_counts() -> None:
    import csv

    from style_files import a1111_styles, write_files

    from dreamtray.styles import load_registry, load_style_file, name_key

    with tempfile.TemporaryDirectory() as folder:
        paths = write_files(Path(folder) / "styles")
        rows = []
        for path in paths:
            problems: list[str] = []
            ours = {name_key(style.name) for style in load_style_file(path, problems)}
            rows.append((path.name, len(a1111_styles(path)), len(ours), len(problems)))
        registry = load_registry(None, paths[0].parent)
        rows.append(
            ("all of the above, one folder", sum(row[1] for row in rows), len(registry), len(registry.problems))
        )
        stopper = Path(folder) / "field-over-the-csv-limit.csv"
        stopper.write_text(f"name,prompt\nFirst,a {{prompt}}\nHuge,{'x' * (csv.field_size_limit() + 1)}\nLast,z\n")
        problems = []
        rows.append((stopper.name, len(a1111_styles(stopper)), len(load_style_file(stopper, problems)), len(problems)))
    table(
        "A1111 styles.csv files: styles loaded (reference reader = A1111's code)",
        ["file", "A1111 reference", "dreamtray", "rows skipped and reported"],
        rows,
    )


def sd_turbo_text_pipe():
    """A StableDiffusionPipeline whose text side is SD-Turbo's (tokenizer, 340 M text encoder); the rest is tiny."""
    import torch
    from architectures import _clip_text, _tokenizer

    from dreamtray.engine.server.tiny import build_tiny_pipeline

    torch.manual_seed(0)
    pipe = build_tiny_pipeline()
    encoder = _clip_text(
        "CLIPTextModel", hidden=1024, intermediate=4096, heads=16, layers=23, act="gelu", projection=512
    )
    pipe.register_modules(text_encoder=encoder.eval(), tokenizer=_tokenizer())
    return pipe


def encoding_costs(name: str, pipe, repeats: int) -> None:
    import torch

    from dreamtray.engine.server import prompts

    def plain() -> object:
        with torch.inference_mode():
            return pipe.encode_prompt(PLAIN, "cpu", 1, False)

    calls = {"plain (diffusers' encode_prompt)": plain}
    calls |= {label: (lambda text=text: prompts.encode(pipe, text, "", guidance=0.0)) for label, text in CASES.items()}
    for call in calls.values():
        call()  # warm: compel's empty-prompt embedding, the allocator
    times: dict[str, list[float]] = {label: [] for label in calls}
    for _ in range(repeats):
        for label, call in calls.items():
            times[label].append(seconds(call)[0])
    base = median(times["plain (diffusers' encode_prompt)"])
    from dreamtray.prompt_syntax import plain_text

    tokens = {
        label: len(pipe.tokenizer(plain_text(text), truncation=False).input_ids) - 2 for label, text in CASES.items()
    }
    tokens["plain (diffusers' encode_prompt)"] = len(pipe.tokenizer(PLAIN).input_ids) - 2
    table(
        f"Prompt encoding on {name} (median of {repeats}, ms; ratio to plain)",
        ["prompt", "tokens", "ms", "ratio"],
        [(label, tokens[label], 1000 * median(spent), median(spent) / base) for label, spent in times.items()],
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--shapes", default="tiny,sd-turbo")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    prepare_run()
    if args.out:
        OUTPUT.append(args.out)
    style_counts()
    import torch

    quiet_progress_bars()
    report(f"torch {torch.__version__}, {torch.get_num_threads()} threads\n")
    shapes = args.shapes.split(",")
    if "tiny" in shapes:
        from dreamtray.engine.server.tiny import build_tiny_pipeline

        encoding_costs("tiny", build_tiny_pipeline(), args.repeats)
    if "sd-turbo" in shapes:
        encoding_costs("SD-Turbo's text encoder (340 M, random weights)", sd_turbo_text_pipe(), args.repeats)


if __name__ == "__main__":
    main()
