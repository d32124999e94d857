"""A1111 styles.csv files in the shapes found in the wild, and a reference reader that reads them as A1111 does.

The reference follows AUTOMATIC1111's `StyleDatabase.load_from_csv` (modules/styles.py, 1.6 and later): the
file opened as `utf-8-sig` with `newline=""`, read by `csv.DictReader(file, skipinitialspace=True)`; empty rows
and rows whose name starts with `#` skipped; the prompt from the `prompt` column, else the legacy `text` one;
the negative prompt from `negative_prompt` when there is one; a later row replaces an earlier one of the same
name; any exception ends the file (the styles read so far stay). Styles are applied with A1111's
`merge_prompts`, in the order given.
"""

from __future__ import annotations

import csv
from pathlib import Path


def a1111_styles(path: Path) -> dict[str, tuple[str | None, str | None]]:
    """name -> (prompt, negative prompt), as A1111 loads the file."""
    styles: dict[str, tuple[str | None, str | None]] = {}
    try:
        with open(path, encoding="utf-8-sig", newline="") as file:
            for row in csv.DictReader(file, skipinitialspace=True):
                if not row or row["name"].startswith("#"):
                    continue
                prompt = row["prompt"] if "prompt" in row else row["text"]
                styles[row["name"]] = (prompt, row.get("negative_prompt", ""))
    except Exception:  # A1111 reports the error and keeps what it read
        pass
    return styles


def a1111_merge(style_prompt: str, prompt: str) -> str:
    """A1111's `merge_prompts`."""
    if "{prompt}" in style_prompt:
        return style_prompt.replace("{prompt}", prompt)
    return ", ".join(filter(None, (prompt.strip(), style_prompt.strip())))


def big_file_with_one_bad_quote(rows: int = 665) -> str:
    """A long styles.csv (as shared on forums) in which one prompt holds a stray, unbalanced quote."""
    lines = ["name,prompt,negative_prompt"]
    for index in range(rows):
        prompt = f'"{{prompt}}, look {index}, 35mm "film"' if index == 333 else f'"{{prompt}}, look {index}"'
        lines.append(f'Look {index:03d},{prompt},"blurry, grain {index}"')
    return "\n".join(lines) + "\n"


FILES: dict[str, str] = {
    "bom-crlf-spaces.csv": (
        "\ufeffname, prompt, negative_prompt\r\n"
        "Cinematic, cinematic still of {prompt}, cartoon\r\n"
        'Vivid, "{prompt}, vivid colors", dull\r\n'
    ),
    "trailing-commas.csv": (
        "name,prompt,negative_prompt,\nInk,ink sketch of {prompt},color,\nNeon,{prompt} in neon light,,,\n"
    ),
    "quoted-commas.csv": (
        "name,prompt,negative_prompt\n"
        '"Moody, dark","{prompt}, moody ""noir"" light","bright, cheerful"\n'
        '"Poster","{prompt}, poster\nlayout",""\n'
    ),
    "legacy-text.csv": "name,text\nOld school,old school tattoo of {prompt}\nPlain old,{prompt}\n",
    "comments-and-short-rows.csv": (
        "name,prompt,negative_prompt\n"
        "# Photography,,\n"
        "#Lenses\n"
        "Macro,macro photo of {prompt}\n"
        "\n"
        "Bare\n"
        "Wide,wide angle {prompt},fisheye\n"
    ),
    "forum-pack.csv": big_file_with_one_bad_quote(),
}
"""The style files of the side-by-side test, by file name."""


def write_files(folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, text in FILES.items():
        path = folder / name
        path.write_bytes(text.encode("utf-8"))
        paths.append(path)
    return paths
