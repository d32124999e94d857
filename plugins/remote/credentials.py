"""Where a remote engine's key comes from: an environment variable or the OS keyring, rarely the config.

A key in the plain config file is refused unless the user insists (`allow_plain_secret = true`), since config
files get shared and backed up. Store one in the keyring with the keyring package's command:
`keyring set dreamtray NAME`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from dreamtray.api import EngineError

KEYRING_SERVICE = "dreamtray"


def find_secret(settings: dict[str, Any], name: str, default_env: str, what: str = "API key") -> str | None:
    """The secret for engine `name`: config (if allowed), a file, the environment, then the keyring."""
    if settings.get("api_key"):
        if not settings.get("allow_plain_secret"):
            raise EngineError(
                f"The {name} engine's {what} is written in the config file in plain text. Move it to the "
                f"environment variable {settings.get('api_key_env', default_env)} or to the OS keyring "
                f"(`keyring set {KEYRING_SERVICE} {settings.get('keyring_user', name)}`), or set "
                "allow_plain_secret = true to keep it there anyway."
            )
        return str(settings["api_key"])
    if settings.get("api_key_file"):
        return Path(settings["api_key_file"]).expanduser().read_text().strip()
    value = os.environ.get(settings.get("api_key_env", default_env))
    if value:
        return value
    return _from_keyring(settings.get("keyring_service", KEYRING_SERVICE), settings.get("keyring_user", name))


def require_secret(settings: dict[str, Any], name: str, default_env: str, what: str = "API key") -> str:
    secret = find_secret(settings, name, default_env, what)
    if not secret:
        env = settings.get("api_key_env", default_env)
        user = settings.get("keyring_user", name)
        raise EngineError(
            f"No {what} for the {name} engine: set the environment variable {env}, or store it in the OS "
            f"keyring with `keyring set {settings.get('keyring_service', KEYRING_SERVICE)} {user}`."
        )
    return secret


def _from_keyring(service: str, user: str) -> str | None:
    try:
        import keyring
        from keyring.errors import KeyringError

        return keyring.get_password(service, user)
    except (ImportError, KeyringError, RuntimeError):
        return None  # no keyring on this system: the environment is the way
