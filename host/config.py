"""The user's settings: one TOML file in the platform's config folder, read into a validated Config.

Reading never fails: a file that is not valid TOML, larger than MAX_FILE_BYTES or nested deeper than MAX_DEPTH
is reported (file, line and column where there is one) and the defaults stand; a bad value is reported (key,
what is allowed, the default used; long values shortened, control characters escaped) and that key keeps its
default while the rest load. Every number has a range.
`DREAMTRAY_CONFIG` names another file. Changes are written with tomlkit, which keeps the user's comments.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    ValidationError,
)
from pydantic_core import ErrorDetails

from dreamtray import paths
from dreamtray.atomic import write_atomically
from dreamtray.engine.settings import IDLE_UNLOAD_SECONDS, QUEUE_LENGTH, STALL_SECONDS
from dreamtray.images.gallery import default_gallery_folder

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

if TYPE_CHECKING:
    from dreamtray.engine.settings import Overrides

CONFIG_ENV = "DREAMTRAY_CONFIG"
FILE_HEADER = "# dreamtray settings: `dreamtray config show` lists every key with its current value.\n"

_NAME = re.compile(r"[a-z][a-z0-9_.-]*")
_DEVICE = re.compile(r"auto|cpu|mps|(cuda|xpu)(:\d+)?")
_HOTKEY_PART = re.compile(r"<[a-z0-9_]+>|[^\s+<>]")
_TRUE = ("true", "yes", "on", "1")
_FALSE = ("false", "no", "off", "0")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_WHOLE_NUMBER = re.compile(r"[+-]?[0-9]{1,18}")
"""A whole number as `config set` takes it: ASCII digits only (int() would also take '٣' or '1_0')."""
MAX_FILE_BYTES = 1024 * 1024
"""A config file larger than this is not read (the defaults stand): settings take a few kB."""
MAX_DEPTH = 8
"""Tables nested deeper than this are refused as a whole file (the deepest real key is three levels)."""
SHOWN_CHARS = 80
"""Characters of a bad value or key echoed in a message; longer ones are shortened."""


class ConfigFileError(ValueError):
    """The config file cannot be read or is not valid TOML; the message names the file and line."""


class ConfigWriteError(ConfigFileError):
    """The config file cannot be written (a read-only or full folder, no permission); nothing was changed."""


class ConfigValueError(ValueError):
    """A value not allowed for a key; the message names the key and what is allowed."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key = key


def _name(value: str) -> str:
    if not _NAME.fullmatch(value):
        raise ValueError("use a name of lower-case letters, digits, '_', '-' or '.', starting with a letter")
    return value


def _optional_name(value: str) -> str:
    return value and _name(value)


def _text(value: str) -> str:
    if _CONTROL.search(value):
        raise ValueError("control characters (line breaks, tabs, NUL...) are not allowed")
    return value


def _model(value: str) -> str:
    if not value.strip():
        raise ValueError("name a model preset, a hub id or a folder ('auto' picks one for this machine)")
    return value


def _hotkey(value: str) -> str:
    if value and not all(_HOTKEY_PART.fullmatch(part) for part in value.split("+")):
        raise ValueError(
            "use keys joined by '+', special keys in angle brackets, like '<ctrl>+<alt>+i' (or '' for none)"
        )
    return value


def _device(value: str) -> str:
    if not _DEVICE.fullmatch(value):
        raise ValueError("use auto, cpu, mps, cuda, cuda:N, xpu or xpu:N")
    return value


def _folder(value: Path) -> Path:
    if "\0" in str(value):
        raise ValueError("a path cannot contain a NUL character")
    path = value.expanduser()
    if not path.is_absolute():
        raise ValueError("use an absolute path (a leading ~ for the home folder is fine)")
    return path


Name = Annotated[str, Field(strict=True), AfterValidator(_name)]
Text = Annotated[str, Field(strict=True), AfterValidator(_text)]
Hotkey = Annotated[str, Field(strict=True), AfterValidator(_hotkey)]


class EngineSettings(BaseModel):
    """How the engine runs; `auto` leaves the choice to the hardware decision."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    idle_unload_seconds: StrictInt = Field(default=300, ge=IDLE_UNLOAD_SECONDS[0], le=IDLE_UNLOAD_SECONDS[1])
    """Unload the model after this many idle seconds (gives the memory back); 0: never."""
    ready_worker: StrictBool = True
    """After an unload, keep a worker with its imports done and no model (about 450 MB) for a faster next image."""
    stall_seconds: StrictInt = Field(default=120, ge=STALL_SECONDS[0], le=STALL_SECONDS[1])
    """End a job that shows no progress for this long, and restart the engine's worker (3x while it starts)."""
    device: Annotated[str, Field(strict=True), AfterValidator(_device)] = "auto"
    dtype: Literal["auto", "float16", "bfloat16", "float32"] = "auto"
    memory_policy: Literal["auto", "gpu", "model_offload", "sequential_offload", "cpu"] = "auto"
    vae_tiling: Literal["auto", "always", "never"] = "auto"
    quality: Literal["auto", "fast", "balanced", "best"] = "auto"
    """fast: TAESD decoder (TAESD), OpenVINO on a CPU; balanced: full VAE, the hardware plan; best: reference pixels."""
    runtime: Literal["auto", "torch", "openvino"] = "auto"
    """The back end of quality fast; `auto` takes OpenVINO on a CPU where it is installed."""
    openvino_int8: StrictBool = True
    """Quality fast on OpenVINO runs an int8 UNet and TAESD decoder (quantized once per model); off: bf16."""
    convert_in_background: Literal["auto", "always", "never"] = "auto"
    """A model with no OpenVINO files converts in a process of its own, at low priority, while its first images
    come from torch; `auto`: a real-sized model does, a small one converts before its first image."""
    allow_pickle: StrictBool = False
    """Load pickle checkpoints (.ckpt, .bin), which can run code; off: .safetensors only."""
    backend: Name = "local"
    """`local`, or an engine back end that a plugin registers."""
    fallback_to_local: StrictBool = False
    """When the chosen back end cannot be reached, let the local engine take the job."""
    backends: dict[Name, dict[str, Any]] = Field(default_factory=dict)
    """Settings of each back end by name ([engine.backends.remote] url, token_file, ...)."""

    def overrides(self) -> Overrides:
        """The settings that win over the automatic hardware decision (None where `auto`)."""
        from dreamtray.engine.settings import Overrides, Policy

        return Overrides(
            device=None if self.device == "auto" else self.device,
            dtype=None if self.dtype == "auto" else self.dtype,
            policy=None if self.memory_policy == "auto" else Policy(self.memory_policy),
            vae_tiling=None if self.vae_tiling == "auto" else self.vae_tiling == "always",
            runtime=None if self.runtime == "auto" else self.runtime,
            quality=None if self.quality == "auto" else self.quality,
            int8=None if self.openvino_int8 else False,
            background=None if self.convert_in_background == "auto" else self.convert_in_background == "always",
        )


class Config(BaseModel):
    """Every setting, validated, with its default."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: Annotated[Text, AfterValidator(_model)] = "auto"
    """A model preset name, a hub id or a local folder; `auto` picks the best for this machine."""
    hotkeys: dict[Name, Hotkey] = Field(default_factory=dict)
    """Action name -> key combination (pynput syntax), over the keys the actions suggest; '' turns one off."""
    default_action: Annotated[str, Field(strict=True), AfterValidator(_optional_name)] = ""
    """The action used where none is named; '' for the one its plugin marks preferred."""
    style: Text = ""
    """Style names applied to every request, comma-separated; '' for none."""
    preview_every: StrictInt = Field(default=1, ge=0, le=150)
    """The tray icon shows the image as it forms, every this many steps (0: never); the TAESD decoder draws it."""
    live_preview: StrictBool = True
    """The prompt box shows a small, fast image of the text once typing pauses (never with an engine that charges
    for each image)."""
    expand_prompts: StrictBool = False
    """The prompt box and `generate` grow a short prompt with a small local text model first (shown, editable)."""
    expansion_model: Text = "Gustavosta/MagicPrompt-Stable-Diffusion"
    """The text model that expands prompts: a hub id or an absolute folder (docs/prompts.md)."""
    gallery: Annotated[Path, AfterValidator(_folder)] = Field(default_factory=default_gallery_folder)
    queue_length: StrictInt = Field(default=QUEUE_LENGTH, ge=1, le=50)
    """Images the tray holds at once, the one being made and those waiting; the local engine lets as many wait."""
    engine: EngineSettings = Field(default_factory=EngineSettings)
    plugins: dict[Name, dict[str, Any]] = Field(default_factory=dict)
    """Each plugin's own settings, `[plugins.NAME]`: the plugin reads them with `dreamtray.api.plugin_settings`
    and checks them itself."""


@dataclass(frozen=True)
class LoadedConfig:
    """A config as read from `path`, with one line for each problem found (already fallen back from)."""

    config: Config
    path: Path
    problems: tuple[str, ...] = ()


def config_path() -> Path:
    """`$DREAMTRAY_CONFIG`, else `dreamtray/config.toml` in the user's config folder."""
    if override := os.environ.get(CONFIG_ENV):
        return Path(override).expanduser()
    return paths.config_dir() / "config.toml"


def read_config() -> Config:
    """The settings as the file says now (defaults where it is missing or wrong); for plugins."""
    return load_config().config


def plugin_settings(plugin: str) -> dict[str, Any]:
    """The plugin's own table of the config, `[plugins.PLUGIN]`, as the file says now ({} when there is none)."""
    return dict(read_config().plugins.get(plugin, {}))


def save_plugin_setting(plugin: str, key: str, value: str) -> None:
    """Write `key = value` into the plugin's own table of the config, keeping the file's comments."""
    set_value(f"plugins.{plugin}.{key}", value)


def read_toml(path: Path) -> dict[str, Any]:
    """The file's TOML data ({} when there is no file); ConfigFileError names the file and the line."""
    text = _read_text(path)
    if text is None:
        return {}
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigFileError(f"{path}: not valid TOML: {exc}") from None
    except RecursionError:
        raise ConfigFileError(f"{path}: nested too deeply (at most {MAX_DEPTH} levels)") from None
    if _depth(data) > MAX_DEPTH:
        raise ConfigFileError(f"{path}: nested too deeply (at most {MAX_DEPTH} levels)")
    return data


def _read_text(path: Path) -> str | None:
    """The file's text, at most MAX_FILE_BYTES of UTF-8; None when there is no file."""
    try:
        with path.open("rb") as file:
            data = file.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ConfigFileError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    if len(data) > MAX_FILE_BYTES:
        raise ConfigFileError(f"{path}: larger than {MAX_FILE_BYTES // 1024} KiB, too large for a settings file")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigFileError(f"{path}: not UTF-8 text") from None


def _depth(data: Any) -> int:
    """How deeply tables and arrays nest in `data` (counted without recursion)."""
    deepest, todo = 0, [(data, 1)]
    while todo:
        value, depth = todo.pop()
        if isinstance(value, dict | list):
            deepest = max(deepest, depth)
            if depth <= MAX_DEPTH:
                todo.extend((child, depth + 1) for child in (value.values() if isinstance(value, dict) else value))
    return deepest


def load_config(path: Path | None = None) -> LoadedConfig:
    """Read the config; problems are reported in `problems`, never raised."""
    path = path or config_path()
    try:
        data = read_toml(path)
    except ConfigFileError as exc:
        return LoadedConfig(Config(), path, (f"{exc}; using the defaults",))
    config, problems = validate(data)
    return LoadedConfig(config, path, tuple(f"{path}: {problem}" for problem in problems))


MOVED_KEYS = {"wallpaper_mode": "plugins.wallpaper.mode"}
"""Keys that moved into a plugin's own table: the old key is still read (and `config set` writes the new one)."""


def validate(data: dict[str, Any]) -> tuple[Config, list[str]]:
    """A Config from TOML data, each bad or unknown key dropped (so it keeps its default) and reported."""
    problems: list[str] = []
    data = _moved(_copy(data), problems)
    while True:
        try:
            return Config.model_validate(data), problems
        except ValidationError as exc:
            errors = exc.errors()
        dropped = False
        for error in errors:
            problems.append(_describe(error))
            dropped = _drop(data, error["loc"]) or dropped
        if not dropped:  # nothing left to fall back from: give up on the file
            return Config(), problems


def _moved(data: dict[str, Any], problems: list[str]) -> dict[str, Any]:
    """`data` with each old key of MOVED_KEYS in its new place (unless that is set too), and a note for each."""
    for old, new in MOVED_KEYS.items():
        if old not in data:
            continue
        value = data.pop(old)
        *tables, name = new.split(".")
        container = data
        for table in tables:
            container = container.setdefault(table, {}) if isinstance(container.get(table, {}), dict) else {}
        container.setdefault(name, value)
        problems.append(f"{old} is now {new}; the old key is still read (`dreamtray config set {new} VALUE` moves it)")
    return data


def _copy(data: Any) -> Any:
    return {key: _copy(value) for key, value in data.items()} if isinstance(data, dict) else data


def _drop(data: dict[str, Any], loc: tuple[Any, ...]) -> bool:
    """Remove the deepest existing key along `loc`; False when there was none."""
    container: Any = data
    parent, last = None, None
    for part in loc:
        if not (isinstance(container, dict) and part in container):
            break
        parent, last, container = container, part, container[part]
    if parent is None:
        return False
    del parent[last]
    return True


def _key(loc: tuple[Any, ...]) -> str:
    """The dotted key at `loc`; a part that is not a plain name is shown quoted, escaped and shortened."""
    parts = (str(part) for part in loc if part != "[key]")
    return ".".join(part if part.isprintable() and len(part) <= SHOWN_CHARS else _shown(part) for part in parts)


def _shown(value: Any) -> str:
    """`value` for a message: as Python writes it (control characters and bidi marks escaped), shortened."""
    text = repr(value[: SHOWN_CHARS + 1] if isinstance(value, str | bytes) else value)
    if len(text) > SHOWN_CHARS:
        size = f"{len(value)} characters" if isinstance(value, str | bytes) else "shortened"
        text = f"{text[:SHOWN_CHARS]}... ({size})"
    return text


def _describe(error: ErrorDetails) -> str:
    key = _key(error["loc"])
    if error["type"] == "extra_forbidden":
        return f"{key}: unknown setting, ignored (known: {', '.join(known_keys())})"
    message = _allowed(error)
    default = _default_of(error["loc"])
    fallback = "ignored" if default is None else f"using the default {default!r}"
    return f"{key} = {_shown(error.get('input'))} is not allowed: {message}; {fallback}"


_TYPE_HINTS = {
    "bool_type": "use true or false (without quotes)",
    "int_type": "use a whole number (without quotes)",
    "string_type": "use text in double quotes",
    "dict_type": "use a table of keys and values",
    "model_type": "use a table of keys and values",
}


def _allowed(error: ErrorDetails) -> str:
    """What pydantic found wrong, worded as what is allowed (a number's whole range where it has one)."""
    bounds = _range_of(error["loc"])
    if bounds is not None and error["type"] in ("int_type", "greater_than_equal", "less_than_equal"):
        return f"use a whole number from {bounds[0]} to {bounds[1]}"
    if error["type"] in _TYPE_HINTS:
        return _TYPE_HINTS[error["type"]]
    return error["msg"].removeprefix("Value error, ").replace("Input should be", "it should be")


def _range_of(loc: tuple[Any, ...]) -> tuple[Any, Any] | None:
    """The (lowest, highest) values allowed for the number at `loc`; None where it is no bounded number."""
    model: Any = Config
    for part in loc[:-1]:
        field = model.model_fields.get(part) if isinstance(part, str) else None
        model = field.annotation if field is not None else None
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            return None
    field = model.model_fields.get(loc[-1]) if loc and isinstance(loc[-1], str) else None
    if field is None:
        return None
    low = next((m.ge for m in field.metadata if hasattr(m, "ge")), None)
    high = next((m.le for m in field.metadata if hasattr(m, "le")), None)
    return None if low is None or high is None else (low, high)


def _default_of(loc: tuple[Any, ...]) -> Any:
    value: Any = Config().model_dump(mode="json")
    for part in loc:
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def known_keys() -> list[str]:
    """Every key `config set` accepts, dotted."""
    top = [name for name in Config.model_fields if name not in ("engine", "hotkeys", "plugins")]
    return [
        *top,
        "hotkeys.<action>",
        *(f"engine.{name}" for name in EngineSettings.model_fields),
        "plugins.<plugin>.<key>",
    ]


def _field_type(key: str) -> type:
    """The Python type a dotted key takes (for turning command-line text into a TOML value)."""
    section, _, name = key.partition(".")
    if section == "hotkeys" and _NAME.fullmatch(name):
        return str
    plugin, _, setting = name.partition(".")
    if section == "plugins" and _NAME.fullmatch(plugin) and _NAME.fullmatch(setting):
        return str  # a plugin's own setting: the plugin checks it
    if section == "engine" and name in EngineSettings.model_fields:
        return EngineSettings.model_fields[name].annotation  # type: ignore[return-value]
    if not name and section in Config.model_fields and section not in ("engine", "hotkeys"):
        return Config.model_fields[section].annotation  # type: ignore[return-value]
    raise ConfigValueError(key, f"unknown setting; known: {', '.join(known_keys())}")


def _parse_value(key: str, text: str) -> str | int | bool:
    kind = _field_type(key)
    if kind is bool:
        word = text.lower()
        if word not in _TRUE + _FALSE:
            raise ConfigValueError(key, f"{_shown(text)} is not allowed: use true or false")
        return word in _TRUE
    if kind is int:
        if not _WHOLE_NUMBER.fullmatch(text.strip()):
            bounds = _range_of(tuple(key.split(".")))
            allowed = f"use a whole number from {bounds[0]} to {bounds[1]}" if bounds else "use a whole number"
            raise ConfigValueError(key, f"{_shown(text)} is not allowed: {allowed} (digits 0-9)")
        return int(text)
    if kind is Path:
        problem = _not_a_writable_folder(text)
        if problem:
            raise ConfigValueError(key, f"{_shown(text)} is not allowed: {problem}")
    return text


def _not_a_writable_folder(text: str) -> str | None:
    """Why `text` cannot be a folder dreamtray writes into (a file, read-only, a pseudo-filesystem); None if it can.

    A folder not made yet is judged by the nearest one above it that exists (nothing is created)."""
    if "\0" in text:
        return None  # the setting's own check says why
    path = Path(text).expanduser()
    if not path.is_absolute():
        return None
    existing = next((folder for folder in (path, *path.parents) if folder.exists()), None)
    if existing is None:
        return None
    if not existing.is_dir():
        return f"{existing} is a file, not a folder"
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as exc:
        return f"no file can be made in {existing} ({exc.strerror or exc}); choose a folder of your own"
    return None


def set_value(key: str, text: str, path: Path | None = None) -> Config:
    """Validate `key = text` and write it into the file, keeping its comments; returns the new config.

    Raises ConfigValueError (nothing written) for an unknown key or a value not allowed, ConfigFileError
    when the file is not valid TOML (it is left for the user to mend).
    """
    import tomlkit

    path = path or config_path()
    key = MOVED_KEYS.get(key, key)
    value = _parse_value(key, text)
    data = read_toml(path)
    parts = key.split(".")
    changed = _copy(data)
    container = changed
    for part in parts[:-1]:
        if not isinstance(container.get(part), dict):
            container[part] = {}
        container = container[part]
    container[parts[-1]] = value
    try:
        config = Config.model_validate(changed)
    except ValidationError as exc:
        for error in exc.errors():
            if _key(error["loc"]) == key or _key(error["loc"]).startswith(key + "."):
                raise ConfigValueError(key, f"{_shown(value)} is not allowed: {_allowed(error)}") from None
        config, _ = validate(changed)  # the file had other problems already: they stay reported on load

    document = tomlkit.parse(_read_text(path) or FILE_HEADER)
    table: Any = document
    for part in parts[:-1]:
        if not isinstance(table.get(part), dict):
            table[part] = tomlkit.table()
        table = table[part]
    table[parts[-1]] = value
    for old, new in MOVED_KEYS.items():  # the old name of a moved key goes: its value is set in the new place
        if new == key:
            document.pop(old, None)
    try:
        write_atomically(path, tomlkit.dumps(document))
    except OSError as exc:
        raise ConfigWriteError(
            f"{path}: cannot be written ({exc.strerror or exc}); nothing was changed. Check that its folder "
            f"is writable, or name another file with {CONFIG_ENV}=FILE."
        ) from None
    return config


def show(config: Config) -> str:
    """The whole config as TOML, defaults included."""
    import tomlkit

    data = config.model_dump(mode="json")
    tables = {key: value for key, value in data.items() if isinstance(value, dict)}
    return tomlkit.dumps({key: value for key, value in data.items() if key not in tables} | tables)
