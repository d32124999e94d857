"""The `hello` engine back end, as docs/plugins.md builds it: a blocking call run on a thread, its progress kept
in a JobRecord. `render` paints a colour from the prompt and seed; a real back end calls its service there."""

import hashlib
import io
import threading

from dreamtray.api import JobCancelled, JobFailed, JobRecord, Request, Result


def render(request: Request, width: int, height: int) -> bytes:
    """The image for `request` as PNG bytes (here: one colour, chosen by the prompt and the seed)."""
    from PIL import Image

    digest = hashlib.sha256(f"{request.prompt}|{request.seed}".encode()).digest()
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), tuple(digest[:3])).save(buffer, format="PNG")
    return buffer.getvalue()


class HelloJob:
    """One job: `render` runs on a thread of its own; the record holds the events that `events()` yields."""

    def __init__(self, engine: "HelloEngine", request: Request):
        self.request = request.with_seed()  # a concrete seed, reported back in the Result
        self.record = JobRecord(self.request)
        self.id = self.record.id
        self._result: Result | None = None
        threading.Thread(target=self._run, args=(engine,), daemon=True).start()

    def _run(self, engine: "HelloEngine") -> None:
        self.record.add_event({"kind": "loading", "message": f"Painting with {engine.model}"})
        width, height = self.request.pixel_size(native=engine.native)
        try:
            images = [
                render(self.request.model_copy(update={"seed": self.request.seed + i}), width, height)
                for i in range(self.request.count)
            ]
        except Exception as exc:
            self.record.finish("failed", error=f"The hello engine failed: {exc}")
            return
        self.record.add_event({"kind": "step", "step": 1, "total": 1})
        self._result = Result(
            request=self.request,
            images=images,
            seeds=[self.request.seed + i for i in range(self.request.count)],
            model=engine.model,
            sampler="Euler",
        )
        self.record.finish("done")

    def events(self):
        return self.record.follow()

    def result(self) -> Result:
        for _ in self.events():
            pass
        if self.record.status == "cancelled":
            raise JobCancelled("The hello job was cancelled.")
        if self._result is None:
            raise JobFailed(self.record.error or "The hello job failed.")
        return self._result

    def cancel(self) -> None:
        self.record.finish("cancelled", error="Cancelled.")


class HelloEngine:
    """The Engine protocol: name, submit, health, models, unload, close."""

    name = "hello"

    def __init__(self, settings: dict):
        self.model = settings.get("model", "hello-colours")
        self.native = int(settings.get("native", 512))

    def submit(self, request: Request) -> HelloJob:
        return HelloJob(self, request)

    def health(self) -> dict:
        return {"status": "ok", "engine": self.name, "model": self.model}

    def models(self) -> list[dict]:
        return [{"id": self.model, "object": "model", "owned_by": "hello"}]

    def unload(self) -> None:
        pass

    def close(self) -> None:
        pass
