"""The engine service and everything behind it (torch and diffusers live here); reached only through `dreamtray serve` and its own process."""
