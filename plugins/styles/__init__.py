"""First-party style packs: photography, illustration and wallpaper styles, as TOML data files in this package.

A third-party pack can be shipped the same way: TOML files inside a package, and a plugin whose
`register_styles` hook registers `dreamtray.styles.load_package_packs(__name__)`.
"""

from __future__ import annotations

from collections.abc import Callable

import dreamtray
from dreamtray.styles import Style, load_package_packs


@dreamtray.hookimpl
def register_styles(register: Callable[[Style], None]) -> None:
    """Register every style of the packs shipped in this package."""
    for style in load_package_packs(__name__, plugin="styles"):
        register(style)
