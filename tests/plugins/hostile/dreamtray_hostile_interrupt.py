"""Raises KeyboardInterrupt at import, as Ctrl+C during a slow import would."""

raise KeyboardInterrupt
