"""Quantize the tiny model's UNet to hybrid int8 in a fresh process, with every non-loopback connection refused.

Usage: python openvino_int8_process.py ROOT OUT.json AUDIT.log
Attempts to reach the network are written to AUDIT.log (see openvino_process.py). OUT.json gets the progress
messages and whether NNCF's real telemetry client was made (else it uses a no-op stub).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from openvino_process import refuse_the_network


def main() -> None:
    root, out, audit = (Path(arg) for arg in sys.argv[1:4])
    refuse_the_network(audit)
    from dreamtray.engine.server import openvino_int8
    from dreamtray.engine.server.openvino_backend import OpenVinoModules
    from dreamtray.engine.server.tiny import build_tiny_pipeline

    events: list[dict] = []
    modules = OpenVinoModules.convert(build_tiny_pipeline(), root, "tiny", events.append)
    samples = openvino_int8.collect_unet_inputs(modules.pipeline(), ["a red fox", "an owl"], 1, 0.0, 64, 64, 3)
    openvino_int8.quantize_unet(root / "unet" / "model.xml", samples, root / "unet-int8", events.append)
    import nncf.telemetry.wrapper  # already loaded by openvino_int8, after the back end

    answer = {
        "messages": [e["message"] for e in events],
        "telemetry_on": isinstance(nncf.telemetry.wrapper.telemetry, nncf.telemetry.wrapper.NNCFTelemetry),
    }
    out.write_text(json.dumps(answer))


if __name__ == "__main__":
    main()
