"""Which private dreamtray modules a plugin imports: they work today but may change with any release, so the
plugin host warns about each one, naming the public alternative in `dreamtray.api`."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

PUBLIC = ("dreamtray", "dreamtray.api", "dreamtray.hookspecs")
ALTERNATIVES = {
    "dreamtray.generation": "dreamtray.api.command_host().generate(...) in a command, image.make_another(...) "
    "in an action",
    "dreamtray.route": "dreamtray.api.command_host().generate(...), or TrayHost.generate(...) in a menu item",
    "dreamtray.config": "dreamtray.api.read_config()",
    "dreamtray.request": "dreamtray.api.Request, RequestError and Result",
    "dreamtray.styles": "dreamtray.api.Style, StyleError and load_package_packs",
    "dreamtray.engine": "dreamtray.api.Engine, Job, ServiceEngine, JobRecord and the engine errors",
    "dreamtray.atomic": "dreamtray.api.write_atomically",
    "dreamtray.samplers": "dreamtray.api.a1111_sampler and SamplerError",
    "dreamtray.display": "dreamtray.api.display_server()",
    "dreamtray.images": "GeneratedImage.path and .request (the image's file and request)",
    "dreamtray.plugins": "the hooks in dreamtray.hookspecs",
}
DEFAULT_ALTERNATIVE = "what dreamtray.api offers (docs/plugins.md)"


def private_imports(plugin: object) -> list[str]:
    """One warning per private dreamtray module that the plugin's source files import (at the top or in a
    function), each naming the public alternative; [] for a plugin without files (an object made in code)."""
    found: dict[str, None] = {}
    for path in _source_files(plugin):
        try:
            tree = ast.parse(path.read_bytes(), filename=str(path))
        except (OSError, SyntaxError, ValueError):
            continue
        for module in _imported_modules(tree):
            if module.startswith("dreamtray.") and module not in PUBLIC:
                found.setdefault(module)
    return [
        f"imports the private module {module}, which may change in any release; use {alternative(module)}"
        for module in found
    ]


def alternative(module: str) -> str:
    """The public way to do what `module` is imported for."""
    for prefix, public in ALTERNATIVES.items():
        if module == prefix or module.startswith(prefix + "."):
            return public
    return DEFAULT_ALTERNATIVE


def _imported_modules(tree: ast.AST) -> list[str]:
    modules = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module == "dreamtray":  # `from dreamtray import generation` names a module too
                modules += [f"dreamtray.{alias.name}" for alias in node.names if _is_module(alias.name)]
            else:
                modules.append(node.module)
    return modules


def _is_module(name: str) -> bool:
    package = Path(__file__).parent
    return (package / f"{name}.py").is_file() or (package / name / "__init__.py").is_file()


def _source_files(plugin: object) -> list[Path]:
    """The plugin module's file, and for a package every module file under it."""
    name = getattr(plugin, "__name__", None)
    file = getattr(plugin, "__file__", None)
    if not isinstance(name, str) or not isinstance(file, str) or sys.modules.get(name) is not plugin:
        return []
    path = Path(file)
    if path.name == "__init__.py":
        return sorted(path.parent.rglob("*.py"))
    return [path]
