"""First-party style packs: photography, illustration and wallpaper styles, as TOML data files in this package.

A third-party pack can be shipped the same way: TOML files inside a package, and a plugin whose
`register_styles` hook registers `dreamtray.api.load_package_packs(__name__)`.
"""

from __future__ import annotations

from collections.abc import Callable

from dreamtray.api import Style, load_package_packs
from dreamtray.hookspecs import hookimpl


@hookimpl
def register_styles(register: Callable[[Style], None]) -> None:
    """Register every style of the packs shipped in this package."""
    for style in load_package_packs(__name__, plugin="styles"):
        register(style)
