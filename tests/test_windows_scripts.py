"""The Windows side, checked here as data: the PowerShell scripts parse, and they agree with the Python code.

No PowerShell runs on this system, so the scripts go through tree-sitter's PowerShell grammar instead.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import tree_sitter
import tree_sitter_powershell

from dreamtray.desktop import autostart, launcher

INSTALLER = Path(__file__).resolve().parent.parent / "installer"
PARSER = tree_sitter.Parser(tree_sitter.Language(tree_sitter_powershell.language()))


def syntax_errors(source: str) -> list[str]:
    """Where the PowerShell grammar finds an error or a missing token; [] for a clean parse."""
    tree = PARSER.parse(source.encode())
    found, todo = [], [tree.root_node]
    while todo:
        node = todo.pop()
        if node.is_error or node.is_missing:
            found.append(f"line {node.start_point[0] + 1}: {source.splitlines()[node.start_point[0]]!r}")
        todo.extend(node.children)
    return found


def test_the_grammar_does_catch_errors() -> None:
    assert syntax_errors('if ($x -eq 1) { Write-Host "one" }') == []
    assert syntax_errors('if ($x -eq 1 { Write-Host "one" ') != []


@pytest.mark.parametrize("name", ["install.ps1", "uninstall.ps1"])
def test_scripts_parse(name: str) -> None:
    assert syntax_errors((INSTALLER / name).read_text()) == []


def test_shortcut_script_parses_and_reads_exactly_the_values_given() -> None:
    assert syntax_errors(launcher.SHORTCUT_SCRIPT) == []
    read = set(re.findall(r"\$env:(\w+)", launcher.SHORTCUT_SCRIPT))
    given = launcher.shortcut_values(["pythonw.exe", "-m", "dreamtray", "run"], Path("a.lnk"), Path("i.ico"), Path("."))
    assert read == set(given)


def test_scripts_use_the_same_places_as_the_python_code() -> None:
    install = (INSTALLER / "install.ps1").read_text()
    uninstall = (INSTALLER / "uninstall.ps1").read_text()
    for script in (install, uninstall):
        assert 'Join-Path $env:LOCALAPPDATA "dreamtray"' in script and 'Join-Path $DataDir "venv"' in script
    assert 'Join-Path $PSScriptRoot "pick_torch.py"' in install
    assert "-m dreamtray.cli.setup launcher install" in install
    # The fallback for a broken environment removes what the Python code writes.
    assert 'Join-Path $env:APPDATA "Microsoft\\Windows\\Start Menu\\Programs\\dreamtray.lnk"' in uninstall
    assert f'"HKCU:\\{autostart.RUN_KEY}" -Name "{launcher.APP_ID}"' in uninstall
