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

- Fooocus styles JSON: an array of objects with `name`, `prompt`, `negative_prompt`.
- AUTOMATIC1111 `styles.csv`: a header `name,prompt,negative_prompt`, one style a row.

Validation is per file: any unknown key, wrong type or out-of-range value is reported with the file and the
style's name, and the whole file is skipped (a pack loads completely or not at all).

Stacking (`apply_styles`), in the order the styles are given:

- Prompt: each template wraps the result of the previous one: every `{prompt}` is replaced by the prompt so
  far. A template without `{prompt}` is appended: `prompt so far, template`. An empty template changes nothing.
- Negative prompt: the request's own negative first, then each style's negative in order, the same way (a
  negative with `{prompt}` wraps the negatives so far, one without is appended); the comma-separated terms are
  then de-duplicated (case-insensitive, first occurrence kept) and joined with ", ".
- Settings: a value set in the request wins; otherwise the last style that sets it. The size is one setting:
  when the request has any of width, height or aspect, no style changes the size; otherwise the last style
  with any of them gives all three. `models` are preferences: when the request names no model, the first
  model of the last style that lists any is used.
- LoRAs: the request's, then each style's in order; a LoRA source already present is not added again.
- `Request.styles` lists the request's style names followed by the names of the styles applied, once each,
  so the saved image records them. Apply styles once, before the request is submitted.

Registry: names are looked up case-insensitively; when two styles share a name, the later one wins and the
replacement is reported. Plugins are read first and the user folder last (its files in name order), so a
user's own file can override a first-party style by giving it the same name.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Protocol

import tomlkit
import tomlkit.exceptions
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from dreamtray.request import MAX_PROMPT_CHARS, MAX_SEED, MAX_SIDE, MIN_SIDE, LoRA, Request


class StyleSource(Protocol):
    """What styles are collected from: the plugin host's `collect("register_styles")`, as (plugin, item) pairs."""

    def collect(self, hook: str) -> list[tuple[str, Any]]: ...


PROMPT_SLOT = "{prompt}"
STYLE_FILE_SUFFIXES = (".toml", ".json", ".csv")


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
        if not value or "\n" in value or "," in value:
            raise ValueError("a style name must be one non-empty line without commas")
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


def styles_from_fooocus_json(text: str, *, where: str, source: str, pack: str) -> list[Style]:
    """The styles of a Fooocus styles file: an array of objects with `name`, `prompt`, `negative_prompt`."""
    try:
        entries = json.loads(text)
    except json.JSONDecodeError as exc:
        raise StyleError(f"{where}: not valid JSON: {exc}") from None
    if not isinstance(entries, list) or not entries:
        raise StyleError(f"{where}: expected a non-empty JSON array of objects with name, prompt, negative_prompt")
    for entry in entries:
        if isinstance(entry, dict) and set(entry) - {"name", "prompt", "negative_prompt"}:
            extra = ", ".join(sorted(set(entry) - {"name", "prompt", "negative_prompt"}))
            raise StyleError(
                f"{where}: style {entry.get('name', '(no name)')!r}: unknown key(s) {extra} "
                "(a Fooocus style has name, prompt, negative_prompt)"
            )
    return _validate_all(entries, pack=pack, source=source, where=where)


def styles_from_a1111_csv(text: str, *, where: str, source: str, pack: str) -> list[Style]:
    """The styles of an AUTOMATIC1111 styles.csv (`name,prompt,negative_prompt`, standard CSV quoting)."""
    reader = csv.DictReader(io.StringIO(text.removeprefix("\ufeff")), strict=True)
    try:
        rows = list(reader)
    except csv.Error as exc:
        raise StyleError(f"{where}: not valid CSV: {exc}") from None
    columns = reader.fieldnames or []
    if "name" not in columns or set(columns) - {"name", "prompt", "negative_prompt"}:
        raise StyleError(
            f"{where}: the header must be name,prompt,negative_prompt (got {','.join(columns) or 'nothing'})"
        )
    entries = []
    for line, row in enumerate(rows, start=2):
        if None in row:
            raise StyleError(f"{where}: row {line} ({row.get('name')!r}) has more fields than the header")
        entries.append({key: value for key, value in row.items() if value is not None})
    if not entries:
        raise StyleError(f"{where}: no styles below the header")
    return _validate_all(entries, pack=pack, source=source, where=where)


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


def load_style_file(path: Path) -> list[Style]:
    """The styles of one file in any supported format, chosen by its extension."""
    where = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise StyleError(f"{where}: cannot read it: {exc}") from None
    source = f"file:{path}"
    suffix = path.suffix.lower()
    if suffix == ".toml":
        return styles_from_toml(text, where=where, source=source, default_pack=path.stem)
    if suffix == ".json":
        return styles_from_fooocus_json(text, where=where, source=source, pack=path.stem)
    if suffix == ".csv":
        return styles_from_a1111_csv(text, where=where, source=source, pack=path.stem)
    raise StyleError(f"{where}: unknown style file type {suffix!r} (allowed: {', '.join(STYLE_FILE_SUFFIXES)})")


def load_package_packs(package: str, *, plugin: str | None = None) -> list[Style]:
    """Every `*.toml` pack shipped inside a Python package: how a style pack plugin loads its data files."""
    styles = []
    for entry in sorted(resources.files(package).iterdir(), key=lambda item: item.name):
        if entry.name.endswith(".toml") and entry.is_file():
            where = f"{package}/{entry.name}"
            styles += styles_from_toml(
                entry.read_text(encoding="utf-8"),
                where=where,
                source=f"plugin:{plugin or package}",
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
        key = _require_style(style).name.casefold()
        previous = self._styles.get(key)
        if previous is not None:
            self.problems.append(
                f"style {style.name!r} from {style.source or 'unknown'} replaces the one from "
                f"{previous.source or 'unknown'}"
            )
        self._styles[key] = style

    def get(self, name: str) -> Style:
        try:
            return self._styles[name.strip().casefold()]
        except KeyError:
            known = ", ".join(sorted(style.name for style in self)) or "none"
            raise StyleError(f"unknown style {name!r} (known styles: {known})") from None

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.strip().casefold() in self._styles

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
                styles = load_style_file(path)
            except StyleError as exc:
                self.problems.append(f"skipped {exc}")
                continue
            for style in styles:
                self.add(style)

    def apply(self, request: Request) -> Request:
        """The request with the styles it names (`request.styles`) applied; `styles` then holds their exact names."""
        chosen = [self.get(name) for name in request.styles]
        return apply_styles(request.model_copy(update={"styles": ()}), chosen)


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


def _wrap(template: str, text: str) -> str:
    if not template.strip():
        return text
    if PROMPT_SLOT in template:
        return template.replace(PROMPT_SLOT, text)
    return f"{text}, {template}" if text.strip() else template


def _unique_terms(text: str) -> str:
    seen: set[str] = set()
    terms = []
    for term in (part.strip() for part in text.split(",")):
        if term and term.casefold() not in seen:
            seen.add(term.casefold())
            terms.append(term)
    return ", ".join(terms)


def apply_styles(request: Request, styles: Iterable[Style]) -> Request:
    """A new, validated request with `styles` stacked onto it in order (the rules are in the module doc)."""
    styles = list(styles)
    prompt, negative = request.prompt, request.negative_prompt
    for style in styles:
        prompt = _wrap(style.prompt, prompt)
        negative = _wrap(style.negative_prompt, negative)
    update: dict[str, Any] = {"prompt": prompt, "negative_prompt": _unique_terms(negative)}

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
    update["styles"] = tuple(dict.fromkeys([*request.styles, *(style.name for style in styles)]))
    # model_copy(update=...) would skip validation; a styled request must be as valid as any other.
    return Request.model_validate({**request.model_dump(), **update})
