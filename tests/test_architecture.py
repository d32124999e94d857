"""The architecture as a contract: import-linter's layers, the engine door, plugins on the public interface only,
no import cycles, and a client side that stays light."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import grimp
import pytest

ROOT = Path(__file__).resolve().parent.parent
PUBLIC = {"dreamtray.api", "dreamtray.hookspecs"}


def test_the_import_contracts_hold():
    """pyproject.toml's [tool.importlinter] contracts: layers, the protected server, plugins, acyclic siblings."""
    lint = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run([str(lint)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Contracts: 5 kept, 0 broken." in result.stdout


def test_no_module_takes_part_in_an_import_cycle():
    graph = grimp.build_graph("dreamtray", "dreamtray_plugins")
    ours = {m for m in graph.modules if m.split(".")[0] in ("dreamtray", "dreamtray_plugins")}
    cycles = [
        (importer, imported)
        for importer in sorted(ours)
        for imported in sorted(graph.find_modules_directly_imported_by(importer) & ours)
        if graph.chain_exists(importer=imported, imported=importer)
    ]
    assert cycles == [], f"imports that close a cycle: {cycles}"


def dreamtray_imports(path: Path) -> set[str]:
    """The dreamtray modules a file imports, found in its syntax tree (lazy imports inside functions too)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
    return {name for name in found if name == "dreamtray" or name.startswith("dreamtray.")}


@pytest.mark.parametrize(
    "folder", [ROOT / "plugins", ROOT / "tests/plugins/hello"], ids=["first-party", "the documented example"]
)
def test_plugins_import_nothing_but_the_public_interface(folder):
    files = [path for path in folder.rglob("*.py") if "build" not in path.parts]
    assert files
    beyond = {str(path.relative_to(ROOT)): sorted(dreamtray_imports(path) - PUBLIC) for path in files}
    assert {name: modules for name, modules in beyond.items() if modules} == {}


FIRST_PARTY = sorted(path.name for path in (ROOT / "plugins").iterdir() if (path / "__init__.py").is_file())


def core_names(path: Path) -> list[tuple[int, str]]:
    """(line, name) for each module imported, string constant and identifier (defined or used) in `path`."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            found.append((node.lineno, node.module or ""))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            found.append((node.lineno, node.value))
        elif isinstance(node, ast.Name):
            found.append((node.lineno, node.id))
        elif isinstance(node, ast.Attribute):
            found.append((node.lineno, node.attr))
        elif isinstance(node, ast.FunctionDef | ast.ClassDef):
            found.append((node.lineno, node.name))
    return found


def test_the_core_names_no_first_party_plugin():
    """The core never imports a first-party plugin (import-linter holds that too) nor names the wallpaper plugin's
    settings, menu or modes: those live in the plugin and reach the core through the hooks, so a third-party
    plugin can do all that it does. ("clipboard" and "styles" are also core ideas: the system clipboard the
    selection is read through, style files; "wallpaper" is only the plugin's.) The one exception is
    config.MOVED_KEYS, which still reads a setting's old name from before it moved into the plugin's table."""
    assert FIRST_PARTY == ["clipboard", "remote", "styles", "wallpaper"]
    named = [
        f"{path.relative_to(ROOT)}:{line}: {name}"
        for path in sorted((ROOT / "host").rglob("*.py"))
        for line, name in core_names(path)
        if name.startswith("dreamtray_plugins") or name.lower().startswith("wallpaper_")
    ]
    assert named == ["host/config.py:%d: wallpaper_mode" % moved_keys_line()], "only the old key's name"


def moved_keys_line() -> int:
    lines = (ROOT / "host/config.py").read_text(encoding="utf-8").splitlines()
    return next(number for number, line in enumerate(lines, 1) if line.startswith("MOVED_KEYS = "))


def test_the_public_interface_offers_what_plugins_need():
    import dreamtray.api as api

    for name in api.__all__:
        assert getattr(api, name) is not None, name
    assert {"Engine", "Job", "EngineError", "Request", "Style", "Action", "MenuItem", "TrayHost"} <= set(api.__all__)


def loaded_after(code: str) -> list[str]:
    probe = (
        f"import sys\n{code}\n"
        "import json; print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('torch', 'diffusers', 'transformers', 'fastapi', 'starlette', 'uvicorn', 'openvino', 'nncf'))))"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120)
    return json.loads(result.stdout)


def test_the_client_side_loads_no_engine_server_and_no_torch():
    code = (
        "import dreamtray.engine.client, dreamtray.engine.backends, dreamtray.route, dreamtray.generation\n"
        "import dreamtray.desktop.tray, dreamtray.desktop.menu, dreamtray.cli.generate, dreamtray.api\n"
        "import dreamtray_plugins.clipboard, dreamtray_plugins.wallpaper, dreamtray_plugins.remote\n"
        "from dreamtray.app import App\n"
        "App().local_engine"
    )
    assert loaded_after(code) == []
