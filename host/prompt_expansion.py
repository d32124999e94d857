"""Prompt expansion for the front ends: the local engine grows the user's words with its text model.

The expansion always runs on this machine's engine (a remote engine or one that charges per image is never
asked), with the seed the image will be made with, so that one seed gives one expansion.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import TYPE_CHECKING

from dreamtray.request import MAX_SEED

if TYPE_CHECKING:
    from dreamtray.app import App


@dataclass(frozen=True)
class Expansion:
    """The user's `words`, the `expansion` the model wrote for them with `seed`, and what the engine noted."""

    words: str
    expansion: str
    seed: int
    seconds: float
    notes: tuple[str, ...] = ()


def expand(app: App, words: str, seed: int | None = None) -> Expansion:
    """`words` grown by the config's expansion model with `seed` (a fresh one when None)."""
    seed = random.randint(0, MAX_SEED) if seed is None else seed
    answer = app.local_engine.expand(" ".join(words.split()), seed, model=app.config.expansion_model)
    return Expansion(words, answer["expansion"], seed, float(answer["seconds"]), tuple(answer.get("notes", ())))
