"""The application's parts, built lazily and shared by every front end (CLI, tray, hotkeys, plugins)."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from dreamtray import paths
from dreamtray.plugins import PluginHost

if TYPE_CHECKING:
    from dreamtray.config import Config, LoadedConfig
    from dreamtray.engine.client import Engine, LocalEngine
    from dreamtray.images.gallery import Gallery
    from dreamtray.styles import StyleRegistry


class App:
    """Config, plugins, styles, engine and gallery: each made on first use, so start-up stays fast."""

    def __init__(self, config_path: Path | None = None, exit_after_idle: float = 1800.0):
        self.config_path = config_path
        self.exit_after_idle = exit_after_idle

    @cached_property
    def loaded_config(self) -> LoadedConfig:
        from dreamtray.config import load_config

        return load_config(self.config_path)

    @property
    def config(self) -> Config:
        return self.loaded_config.config

    @cached_property
    def plugins(self) -> PluginHost:
        return PluginHost()

    @cached_property
    def styles(self) -> StyleRegistry:
        from dreamtray.styles import load_registry

        return load_registry(self.plugins)

    @cached_property
    def gallery(self) -> Gallery:
        from dreamtray.images.gallery import Gallery

        return Gallery(self.config.gallery)

    @cached_property
    def local_engine(self) -> LocalEngine:
        from dreamtray.engine.client import LocalEngine
        from dreamtray.engine.settings import WorkerSettings

        engine = self.config.engine
        overrides = engine.overrides()
        settings = WorkerSettings(
            cache_dir=str(paths.cache_dir() / "models"),
            default_model=self.config.model,
            idle_unload_seconds=float(engine.idle_unload_seconds),
            ready_worker=engine.ready_worker,
            stall_seconds=float(engine.stall_seconds),
            allow_pickle=engine.allow_pickle,
            overrides={
                "device": overrides.device,
                "dtype": overrides.dtype,
                "policy": overrides.policy.value if overrides.policy else None,
                "vae_tiling": overrides.vae_tiling,
                "runtime": overrides.runtime,
                "quality": overrides.quality,
                "int8": overrides.int8,
                "background": overrides.background,
            },
        )
        return LocalEngine(
            settings,
            paths.state_dir(),
            paths.data_dir() / "engine-token",
            self.exit_after_idle,
            max_queue=self.config.queue_length,  # the tray's queue and the engine's agree (docs/desktop.md)
        )

    @cached_property
    def engine(self) -> Engine:
        """The engine named in the config: the local one, or a back end that a plugin registers."""
        from dreamtray.engine.backends import open_engine

        return open_engine(self.config.engine.model_dump(), self.plugins, lambda: self.local_engine, warn=self.warn)

    @property
    def default_action(self) -> str:
        """The action used where none is named: the config's `default_action`, else the one a plugin marks
        preferred, else the first by name ('' when no plugin offers any)."""
        if self.config.default_action:
            return self.config.default_action
        actions = self.plugins.actions()
        return next((name for name, action in actions.items() if action.preferred), next(iter(actions), ""))

    @property
    def hotkeys(self) -> dict[str, str]:
        """Action name -> keys: what each action suggests, changed or turned off ('') by the config's table."""
        suggested = {name: action.hotkey for name, action in self.plugins.actions().items() if action.hotkey}
        return suggested | self.config.hotkeys

    def warn(self, message: str) -> None:
        """Tell the user something went wrong but work goes on (front ends replace this: stderr, notification)."""
        import logging

        logging.getLogger("dreamtray").warning(message)

    def reload_config(self) -> None:
        """Read the config file again on next use, and reopen what depends on it (the running local engine stays)."""
        for cached in ("loaded_config", "gallery", "engine"):
            self.__dict__.pop(cached, None)
