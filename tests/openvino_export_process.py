"""Run one `quality = fast` job of a hub model in a fresh process, as the engine's worker would, and report what
it read and imported.

Usage: python openvino_export_process.py CACHE_DIR MODEL OUT.json [INIT.png]
With INIT.png the job is image-to-image from that picture (strength 0.5).
The hub is the one HF_ENDPOINT names (the test's loopback hub). OUT.json gets the progress messages, warnings,
the image, every file under HF_HOME that Python opened, and the top-level modules imported.
"""

from __future__ import annotations

import base64
import json
import os
import sys
from pathlib import Path


def main() -> None:
    cache, model, out = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
    hub_home = os.environ["HF_HOME"]
    opened: list[str] = []

    def hook(event: str, args: tuple) -> None:
        if event == "open" and isinstance(args[0], str) and args[0].startswith(hub_home):
            opened.append(os.path.relpath(args[0], hub_home))

    sys.addaudithook(hook)
    from dreamtray.engine.server.hardware import Machine
    from dreamtray.engine.server.runner import Runner
    from dreamtray.request import Request

    runner = Runner(cache_dir=cache, default_model=model, machine=Machine(cpu_cores=2, ram_gb=24, openvino=True))
    messages: list[str] = []
    request = Request(prompt="a red fox", seed=5, steps=2, guidance=0.0, width=64, height=64, quality="fast")
    if len(sys.argv) > 4:
        request = request.model_copy(update={"init_image": Path(sys.argv[4]).read_bytes(), "strength": 0.5})
    result = runner.generate(request, emit=lambda event: messages.append(event.get("message", "")))
    out.write_text(
        json.dumps(
            {
                "messages": messages,
                "warnings": result.warnings,
                "png": base64.b64encode(result.images[0]).decode("ascii"),
                "light": runner.loaded.light,
                "opened": opened,
                "modules": sorted({name.split(".")[0] for name in sys.modules}),
                "torch_parameters": sum(  # the empty VAE's are on the meta device: shapes, no values
                    sum(p.numel() for p in module.parameters() if p.device.type != "meta")
                    for module in runner.loaded.pipe.components.values()
                    if hasattr(module, "parameters")
                ),
            }
        )
    )


if __name__ == "__main__":
    main()
