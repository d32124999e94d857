"""First-party plugin: put the finished image on the clipboard as image/png.

Uses only dreamtray's public plugin interface.
"""

from __future__ import annotations

from dreamtray.api import Action, GeneratedImage
from dreamtray.hookspecs import hookimpl

from .png import copy_png


def copy_to_clipboard(image: GeneratedImage) -> str:
    copy_png(image.path)
    return "The image is on the clipboard: paste it anywhere."


@hookimpl
def register_actions(register):
    register(
        Action(
            name="clipboard",
            label="Copy image to clipboard",
            run=copy_to_clipboard,
            hotkey="<ctrl>+<alt>+i",
            preferred=True,  # the action a key, the menu or the prompt box use when the user named none
        )
    )
