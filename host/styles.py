"""Styles: named prompt templates with settings, grouped in packs. Data, never code.

A style wraps the user's prompt (`{prompt}` in its template marks where it goes), adds negative terms and may
recommend settings. Packs come from plugins (`register_styles`) and from files dropped in the user styles
folder, in three formats:

- dreamtray TOML (one file = one pack)::

      [pack]
      name = "My pack"                 # optional; the file name without extension when missing

      [[style]]
      name = "Ink sketch"
      prompt = "ink sketch of {prompt}, cross-hatching"
      negative_prompt = "color, photo"
      aspect = 1.5                     # optional settings: width, height, aspect, steps, guidance,
      steps = 25                       #   sampler, seed, models (preferred, best first), loras
      loras = [{ source = "me/ink-lora", scale = 0.7 }]

- Fooocus styles JSON, read as Fooocus reads it: an array of objects with `name`, `prompt`, `negative_prompt`
  (other keys ignored, a missing text is empty); a style is named as Fooocus displays it (`sai-cinematic` is
  `SAI Cinematic`).
- AUTOMATIC1111 `styles.csv`, read as A1111 reads it (`csv.DictReader` with `skipinitialspace`, UTF-8 with or
  without a BOM, any line ends): the header `name,prompt,negative_prompt` or the legacy `name,text`; fields past
  the header's and empty header columns are ignored, missing fields are empty, empty rows and rows whose name
  starts with `#` are skipped.

A TOML pack is checked per file: any unknown key, wrong type or out-of-range value is reported with the file
and the style's name, and the whole file is skipped (a pack loads completely or not at all). Fooocus and A1111
files are checked per style, as their own programs read them: a row or entry that makes no valid style is
skipped and reported with its line number (CSV) or position (JSON); the rest of the file loads.

Stacking (`apply_styles`), in the order the styles are given:

- Prompt, as A1111 merges styles: each template wraps the result of the previous one: every `{prompt}` is
  replaced by the prompt so far. A template without `{prompt}` is appended: `prompt so far, template` (both
  stripped, an empty one left out). The text is never otherwise changed: no term is removed or merged.
- Negative prompt: the request's own negative first, then each style's negative in order, the same way.
- Settings: a value set in the request wins; otherwise the last style that sets it. The size is one setting:
  when the request has any of width, height or aspect, no style changes the size; otherwise the last style
  with any of them gives all three. `models` are preferences: when the request names no model, the first
  model of the last style that lists any is used.
- LoRAs: the request's, then each style's in order; a LoRA source already present is not added again.
- `Request.styles` lists the names of the styles applied and `Request.unstyled` keeps the user's own prompt
  and negative prompt, so the saved image records both apart. Styles always apply to the user's own text:
  applying them to a styled request again gives the same request (a style never applies twice).

Registry: names are looked up ignoring case and the separators blank, `-`, `_` and `,` (so `sai-cinematic`,
`SAI Cinematic` and `sai_cinematic` are one name); when two styles share a name, the later one wins and the
replacement is reported. An unknown name is a StyleError naming the three closest known names. Plugins are
read first and the user folder last (its files in name order), so a user's own file can override a
first-party style by giving it the same name.
"""

from __future__ import annotations

import csv
import difflib
import io
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Protocol

import tomlkit
import tomlkit.exceptions
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from dreamtray.paths import file_problem
from dreamtray.request import MAX_PROMPT_CHARS, MAX_SEED, MAX_SIDE, MIN_SIDE, LoRA, Request, UserText


class StyleSource(Protocol):
    """What styles are collected from: the plugin host's `collect("register_styles")`, as (plugin, item) pairs."""

    def collect(self, hook: str) -> list[tuple[str, Any]]: ...


PROMPT_SLOT = "{prompt}"
_SEPARATORS = re.compile(r"[\s\-_,]+")
STYLE_FILE_SUFFIXES = (".toml", ".json", ".csv")
MAX_STYLE_FILE_BYTES = 16 * 2**20
"""A style file larger than this is refused unread (the largest known packs are a few hundred kilobytes)."""


class StyleError(ValueError):
    """A style or style file that cannot be used; the message names the file, the style and the problem."""


class Style(BaseModel):
    """One named style: a prompt template, a negative prompt and optional recommended settings."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    name: str = Field(min_length=1, max_length=200)
    prompt: str = Field(PROMPT_SLOT, max_length=MAX_PROMPT_CHARS)
    """The template; every `{prompt}` is replaced by the user's prompt. Without one, it is appended."""
    negative_prompt: str = Field("", max_length=MAX_PROMPT_CHARS)
    description: str = ""
    width: int | None = Field(None, ge=MIN_SIDE, le=MAX_SIDE)
    height: int | None = Field(None, ge=MIN_SIDE, le=MAX_SIDE)
    aspect: float | None = Field(None, gt=0.1, lt=10.0)
    steps: int | None = Field(None, ge=1, le=150)
    guidance: float | None = Field(None, ge=0.0, le=30.0)
    sampler: str | None = None
    seed: int | None = Field(None, ge=0, le=MAX_SEED)
    models: tuple[str, ...] = ()
    loras: tuple[LoRA, ...] = ()
    pack: str = ""
    source: str = ""
    """Where the style came from: `plugin:<plugin name>` or `file:<path>`."""

    @field_validator("name")
    @classmethod
    def _name_is_one_line(cls, value: str) -> str:
        value = value.strip()
        if not value or "\n" in value or "\r" in value:
            raise ValueError("a style name must be one non-empty line")
        return value

    @field_validator("models", "loras", mode="before")
    @classmethod
    def _tuple_from_list(cls, value: object) -> object:
        # TOML and JSON give arrays as lists; strict mode takes only tuples for these fields.
        return tuple(value) if isinstance(value, list) else value

    @property
    def settings(self) -> dict[str, Any]:
        """The recommended settings this style sets (the ones that are not None or empty)."""
        names = ("width", "height", "aspect", "steps", "guidance", "sampler", "seed", "models", "loras")
        return {name: getattr(self, name) for name in names if getattr(self, name) not in (None, ())}


def style_from_mapping(data: object, *, pack: str, source: str, where: str) -> Style:
    """Validate one style given as a mapping; `where` names the file (or plugin) in error messages."""
    if not isinstance(data, dict):
        raise StyleError(f"{where}: a style must be a table of keys, got {type(data).__name__}")
    label = data.get("name") if isinstance(data.get("name"), str) else "(no name)"
    if "pack" in data or "source" in data:
        raise StyleError(f"{where}: style {label!r}: `pack` and `source` are set by dreamtray, not in a style")
    try:
        return Style.model_validate({**data, "pack": pack, "source": source}, strict=True)
    except ValidationError as exc:
        problems = "; ".join(_describe(error) for error in exc.errors())
        raise StyleError(f"{where}: style {label!r}: {problems}") from None


def _describe(error: Any) -> str:
    key = ".".join(str(part) for part in error["loc"]) or "style"
    if error["type"] == "extra_forbidden":
        if error["loc"][0] == "loras":
            allowed = ", ".join(LoRA.model_fields)
        else:
            allowed = ", ".join(name for name in Style.model_fields if name not in ("pack", "source"))
        return f"unknown key {key!r} (allowed: {allowed})"
    return f"{key}: {error['msg'].removeprefix('Value error, ')}"


def styles_from_toml(text: str, *, where: str, source: str, default_pack: str) -> list[Style]:
    """The styles of one dreamtray TOML pack."""
    try:
        document = tomlkit.parse(text).unwrap()
    except tomlkit.exceptions.ParseError as exc:
        raise StyleError(f"{where}: not valid TOML: {exc}") from None
    unknown = sorted(set(document) - {"pack", "style"})
    if unknown:
        raise StyleError(f"{where}: unknown top-level key(s) {', '.join(unknown)} (allowed: [pack], [[style]])")
    header = document.get("pack", {})
    if not isinstance(header, dict) or set(header) - {"name", "description"}:
        raise StyleError(f"{where}: [pack] may only have `name` and `description`")
    pack = header.get("name", default_pack)
    if not isinstance(pack, str) or not pack.strip():
        raise StyleError(f"{where}: [pack] name must be a non-empty string")
    entries = document.get("style", [])
    if not isinstance(entries, list) or not entries:
        raise StyleError(f"{where}: no styles: add at least one [[style]] table")
    return _validate_all(entries, pack=pack.strip(), source=source, where=where)


def fooocus_display_name(name: str) -> str:
    """A style name as Fooocus shows it (its `normalize_key`): `sai-3d-model` is `SAI 3D Model`."""
    words = name.replace("-", " ").split(" ")
    shown = " ".join(word[:1].upper() + word[1:].lower() for word in words)
    for old, new in (("3d", "3D"), ("Sai", "SAI"), ("Mre", "MRE"), ("(s", "(S")):
        shown = shown.replace(old, new)
    return shown


def styles_from_fooocus_json(
    text: str, *, where: str, source: str, pack: str, problems: list[str] | None = None
) -> list[Style]:
    """The styles of a Fooocus styles file: an array of objects with `name`, `prompt`, `negative_prompt`.

    As Fooocus reads it: other keys are ignored and a missing text is empty. An entry that makes no valid
    style is skipped and reported in `problems` with its position; a file that is no JSON array is a StyleError.
    """
    try:
        entries = json.loads(text.removeprefix("\ufeff"))
    except json.JSONDecodeError as exc:
        raise StyleError(f"{where}: not valid JSON: {exc}") from None
    except RecursionError:
        raise StyleError(f"{where}: not valid JSON: nested too deep") from None
    if not isinstance(entries, list) or not entries:
        raise StyleError(f"{where}: expected a non-empty JSON array of objects with name, prompt, negative_prompt")
    styles = []
    for number, entry in enumerate(entries, start=1):
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            _report(problems, f"{where}: entry {number}: skipped: not an object with a `name` string")
            continue
        fields = {"name": fooocus_display_name(entry["name"].strip())}
        fields |= {key: entry[key] for key in ("prompt", "negative_prompt") if entry.get(key) is not None}
        try:
            styles.append(style_from_mapping(fields, pack=pack, source=source, where=f"{where}: entry {number}"))
        except StyleError as exc:
            _report(problems, f"{exc}; skipped")
    return styles


def styles_from_a1111_csv(
    text: str, *, where: str, source: str, pack: str, problems: list[str] | None = None
) -> list[Style]:
    """The styles of an AUTOMATIC1111 styles.csv, read the way A1111 reads it (see the module doc).

    A row that cannot be read or makes no valid style is skipped and reported in `problems` with its line
    number; a file without a usable header is a StyleError.
    """
    reader = csv.reader(io.StringIO(text.removeprefix("\ufeff"), newline=""), skipinitialspace=True)
    try:
        columns = next(reader, [])
    except csv.Error as exc:
        raise StyleError(f"{where}: line 1: not valid CSV: {exc}") from None
    text_column = "prompt" if "prompt" in columns else "text"
    if "name" not in columns or text_column not in columns:
        got = ",".join(columns) or "nothing"
        raise StyleError(f"{where}: the header must be name,prompt,negative_prompt or name,text (got {got})")
    wanted = {"name": columns.index("name"), "prompt": columns.index(text_column)}
    if "negative_prompt" in columns:
        wanted["negative_prompt"] = columns.index("negative_prompt")
    styles = []
    while True:
        line = reader.line_num + 1
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            _report(problems, f"{where}: line {line}: skipped: not valid CSV: {exc}")
            if reader.line_num < line:  # nothing was read past the error: stop rather than loop
                break
            continue
        if not row or row[0].startswith("#"):
            continue
        fields = {key: row[index] for key, index in wanted.items() if index < len(row)}
        try:
            styles.append(style_from_mapping(fields, pack=pack, source=source, where=f"{where}: line {line}"))
        except StyleError as exc:
            _report(problems, f"{exc}; skipped")
    return styles


def _report(problems: list[str] | None, problem: str) -> None:
    if problems is None:
        raise StyleError(problem)
    problems.append(problem)


def _validate_all(entries: list[object], *, pack: str, source: str, where: str) -> list[Style]:
    styles, problems = [], []
    for entry in entries:
        try:
            styles.append(style_from_mapping(entry, pack=pack, source=source, where=where))
        except StyleError as exc:
            problems.append(str(exc))
    if problems:
        raise StyleError("\n".join(problems))
    return styles


def load_style_file(path: Path, problems: list[str] | None = None) -> list[Style]:
    """The styles of one file in any supported format, chosen by its extension.

    Rows of A1111 and Fooocus files that make no style are reported in `problems` and skipped (a StyleError
    when `problems` is None); a file that cannot be read at all is a StyleError.
    """
    where = str(path)
    try:
        with path.open("rb") as file:
            data = file.read(MAX_STYLE_FILE_BYTES + 1)
    except (OSError, ValueError) as exc:
        raise StyleError(f"{where}: cannot read it: {file_problem(exc)}") from None
    if len(data) > MAX_STYLE_FILE_BYTES:
        raise StyleError(f"{where}: larger than {MAX_STYLE_FILE_BYTES // 2**20} MB, too large for a style file")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise StyleError(f"{where}: cannot read it: not UTF-8 text (byte {exc.start})") from None
    source = f"file:{path}"
    suffix = path.suffix.lower()
    if suffix == ".toml":
        return styles_from_toml(text, where=where, source=source, default_pack=path.stem)
    if suffix == ".json":
        return styles_from_fooocus_json(text, where=where, source=source, pack=path.stem, problems=problems)
    if suffix == ".csv":
        return styles_from_a1111_csv(text, where=where, source=source, pack=path.stem, problems=problems)
    raise StyleError(f"{where}: unknown style file type {suffix!r} (allowed: {', '.join(STYLE_FILE_SUFFIXES)})")


def load_package_packs(package: str, *, plugin: str | None = None) -> list[Style]:
    """Every `*.toml` pack shipped inside a Python package: how a style pack plugin loads its data files. Their
    source is `plugin:PLUGIN` when `plugin` is given, else the registering plugin's name (`dreamtray styles`)."""
    styles = []
    for entry in sorted(resources.files(package).iterdir(), key=lambda item: item.name):
        if entry.name.endswith(".toml") and entry.is_file():
            where = f"{package}/{entry.name}"
            styles += styles_from_toml(
                entry.read_text(encoding="utf-8"),
                where=where,
                source=f"plugin:{plugin}" if plugin else "",
                default_pack=entry.name.removesuffix(".toml"),
            )
    return styles


def default_styles_dir() -> Path:
    """The user styles folder, where style files can be dropped in."""
    from dreamtray.paths import data_dir

    return data_dir() / "styles"


@dataclass
class StyleRegistry:
    """Styles by name (case-insensitive), plus the problems met while filling it."""

    _styles: dict[str, Style] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def add(self, style: Style) -> None:
        """Register a style; one with the same name is replaced (the later one wins) and that is reported."""
        key = name_key(_require_style(style).name)
        previous = self._styles.get(key)
        if previous is not None:
            self.problems.append(
                f"style {style.name!r} from {style.source or 'unknown'} replaces the one from "
                f"{previous.source or 'unknown'}"
            )
        self._styles[key] = style

    def get(self, name: str) -> Style:
        """The style called `name` (case and separators ignored); StyleError names the closest ones."""
        try:
            return self._styles[name_key(name)]
        except KeyError:
            raise StyleError(self.unknown(name)) from None

    def unknown(self, name: str) -> str:
        """The message for an unknown style name: the three closest known names, or how to add styles."""
        if not self._styles:
            return f"unknown style {name!r}: there are no styles (drop style files in {default_styles_dir()})"
        closest = difflib.get_close_matches(name_key(name), list(self._styles), n=3, cutoff=0.0)
        names = ", ".join(repr(self._styles[key].name) for key in closest)
        return f"unknown style {name!r}; the closest are {names} (`dreamtray styles` lists all {len(self)})"

    def resolve(self, names: Iterable[str]) -> list[Style]:
        """The styles `names` call for, in order. A name holding commas may arrive split at them (from
        comma-separated text): neighbouring parts are joined back when together they name a style."""
        parts = list(names)
        found, start = [], 0
        while start < len(parts):
            for end in range(len(parts), start, -1):
                key = name_key(" ".join(parts[start:end]))
                if key in self._styles:
                    found.append(self._styles[key])
                    start = end
                    break
            else:
                raise StyleError(self.unknown(parts[start]))
        return found

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name_key(name) in self._styles

    def __iter__(self) -> Iterator[Style]:
        return iter(sorted(self._styles.values(), key=lambda style: (style.pack.casefold(), style.name.casefold())))

    def __len__(self) -> int:
        return len(self._styles)

    def add_from_plugins(self, plugins: StyleSource) -> None:
        """Every style the `register_styles` hooks hand over. A plugin that raises registers nothing (the plugin
        host records why, for `dreamtray plugins`); anything that is not a Style is reported here and skipped."""
        for plugin_name, item in plugins.collect("register_styles"):
            try:
                style = _require_style(item)
            except StyleError as exc:
                self.problems.append(f"plugin {plugin_name}: {exc}")
                continue
            self.add(style if style.source else style.model_copy(update={"source": f"plugin:{plugin_name}"}))

    def add_from_folder(self, folder: Path) -> None:
        """Load every style file in `folder` (name order); a broken file is reported and skipped."""
        if not folder.is_dir():
            return
        for path in sorted(folder.iterdir()):
            if path.suffix.lower() not in STYLE_FILE_SUFFIXES or not path.is_file():
                continue
            try:
                styles = load_style_file(path, self.problems)
            except StyleError as exc:
                self.problems.append(f"skipped {exc}")
                continue
            for style in styles:
                self.add(style)

    def apply(self, request: Request) -> Request:
        """The request with the styles it names (`request.styles`) applied; `styles` then holds their exact names."""
        return apply_styles(request, self.resolve(request.styles))


def name_key(name: str) -> str:
    """A style name as it is looked up: case-folded, each run of blanks, `-`, `_` and `,` one blank."""
    return _SEPARATORS.sub(" ", name.casefold()).strip()


def _require_style(style: object) -> Style:
    if not isinstance(style, Style):
        raise StyleError(f"register_styles expects a dreamtray.styles.Style, got {type(style).__name__}")
    return style


def load_registry(plugins: StyleSource | None, folder: Path | None = None) -> StyleRegistry:
    """Styles from the plugins first, then from the user styles folder (`folder`, or the default one)."""
    registry = StyleRegistry()
    if plugins is not None:
        registry.add_from_plugins(plugins)
    registry.add_from_folder(folder or default_styles_dir())
    return registry


def merge(template: str, text: str) -> str:
    """A1111's merge of one style into a prompt: `{prompt}` replaced, else `text, template` (empties left out)."""
    if PROMPT_SLOT in template:
        return template.replace(PROMPT_SLOT, text)
    return ", ".join(part for part in (text.strip(), template.strip()) if part)


def apply_styles(request: Request, styles: Iterable[Style]) -> Request:
    """A new, validated request with `styles` stacked onto the user's own text (the rules are in the module doc).

    `request.styles` is replaced by the names of `styles`; a request styled before starts again from its
    `unstyled` text, so no style is ever applied twice.
    """
    styles = list(styles)
    user = request.unstyled or UserText(prompt=request.prompt, negative_prompt=request.negative_prompt)
    prompt, negative = user.prompt, user.negative_prompt
    for style in styles:
        prompt = merge(style.prompt, prompt)
        negative = merge(style.negative_prompt, negative)
    update: dict[str, Any] = {"prompt": prompt, "negative_prompt": negative}

    for name in ("steps", "guidance", "sampler", "seed"):
        if getattr(request, name) is None:
            update[name] = next((getattr(s, name) for s in reversed(styles) if getattr(s, name) is not None), None)
    if request.width is None and request.height is None and request.aspect is None:
        sizer = next((s for s in reversed(styles) if (s.width, s.height, s.aspect) != (None, None, None)), None)
        if sizer is not None:
            update.update(width=sizer.width, height=sizer.height, aspect=sizer.aspect)
    if request.model is None:
        update["model"] = next((s.models[0] for s in reversed(styles) if s.models), None)

    loras = list(request.loras)
    for style in styles:
        loras += [lora for lora in style.loras if lora.source not in {known.source for known in loras}]
    update["loras"] = tuple(loras)
    update["styles"] = tuple(style.name for style in styles)
    update["unstyled"] = user.model_dump() if styles else None
    # model_copy(update=...) would skip validation; a styled request must be as valid as any other.
    return Request.model_validate({**request.model_dump(), **update})
