"""Numbers from a back end's settings table ([engine.backends.NAME]), each checked against its range."""

from __future__ import annotations

import math
from typing import Any

from dreamtray.api import EngineError


def setting(settings: dict[str, Any], key: str, default: float, low: float, high: float, whole: bool = False) -> Any:
    """`settings[key]` (else `default`) as a number from `low` to `high`; EngineError naming the key, the range
    and the default otherwise (a TOML number only: text, booleans, NaN and infinities are refused)."""
    value = settings.get(key, default)
    kinds = (int,) if whole else (int, float)
    if isinstance(value, kinds) and not isinstance(value, bool) and math.isfinite(value) and low <= value <= high:
        return value
    shown = repr(value)[:40]
    kind = "a whole number" if whole else "a number"
    raise EngineError(f"{key} = {shown} is not allowed: use {kind} from {low} to {high} (the default is {default}).")
