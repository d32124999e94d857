"""The engine service and everything behind it, torch and diffusers included.

Reached only through `dreamtray serve` and the service's own process, never imported by the tray or the CLI.
"""
