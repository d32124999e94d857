"""dreamtray: select text anywhere, press a key, get an image from a local diffusion engine."""

from .api import Action, GeneratedImage, MenuItem
from .generation import generate_prompt as generate
from .hookspecs import hookimpl
from .request import Request, RequestError, Result

__all__ = ["Action", "GeneratedImage", "MenuItem", "Request", "RequestError", "Result", "generate", "hookimpl"]
