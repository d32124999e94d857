"""A plugin's engine is held to the Engine protocol (docs/plugins.md): checked when registered, when opened, at
each job and each result, and every message names the plugin, the back end and the member or field. No real
engine here: each back end is a plugin object that paints with Pillow, the way the docs' example does."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from dreamtray.api import Request, Result
from dreamtray.engine.backends import engine_factories, open_engine
from dreamtray.engine.client import EngineError, JobFailed
from dreamtray.plugins import PluginHost


def png(size: tuple[int, int] = (8, 8)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (200, 10, 10)).save(buffer, format="PNG")
    return buffer.getvalue()


class DoneJob:
    def __init__(self, result: object):
        self.id, self._result = "job-1", result

    def events(self):
        yield {"kind": "done"}

    def result(self):
        return self._result

    def cancel(self) -> None:
        pass


class PaintEngine:
    """A whole engine, but for `name`: its results are whatever `answer(request)` gives."""

    def __init__(
        self, answer=lambda request: Result(request=request, images=[png()], seeds=[1], model="m", sampler="Euler")
    ):
        self.answer = answer

    def submit(self, request):
        return DoneJob(self.answer(request))

    def health(self):
        return {"status": "ok"}

    def models(self):
        return []

    def unload(self) -> None:
        pass

    def close(self) -> None:
        pass


class NoModels:
    def submit(self, request): ...
    def health(self): ...
    def unload(self): ...
    def close(self): ...


def host_with(name: str, factory) -> PluginHost:
    class Plugin:
        @staticmethod
        def register_engines(register):
            register(name, factory)

    from dreamtray.hookspecs import hookimpl

    Plugin.register_engines = hookimpl(Plugin.register_engines)
    host = PluginHost(only=[])
    host.register(Plugin, name="painter")
    return host


def opened(host: PluginHost, backend: str, settings: dict | None = None):
    config = {"backend": backend, "backends": {backend: settings or {}}}
    return open_engine(config, host, lambda: pytest.fail("the local engine is not wanted here"))


def test_an_engine_without_a_name_works_under_its_back_ends_name():
    engine = opened(host_with("paint", lambda settings: PaintEngine()), "paint")
    result = engine.submit(Request(prompt="a fox")).result()
    assert result.model == "m" and engine.name and "paint" in engine.name


def test_an_engine_class_lacking_a_member_is_named_when_registered():
    host = host_with("no-models", NoModels)
    assert engine_factories(host) == {}
    assert host.records["painter"].errors == [
        "register_engines gave ('no-models', <class 'test_engine_contract.NoModels'>): the engine class NoModels "
        "lacks models (the Engine protocol); left out"
    ]


def test_an_engine_lacking_a_member_is_named_when_opened():
    with pytest.raises(EngineError) as raised:
        opened(host_with("no-models", lambda settings: NoModels()), "no-models")
    assert (
        str(raised.value)
        == "The no-models engine (plugin painter) lacks models (the Engine protocol, docs/plugins.md)."
    )


def test_a_missing_setting_names_the_plugin_and_the_table():
    def needs_url(settings):
        return PaintEngine(settings["url"])

    with pytest.raises(EngineError) as raised:
        opened(host_with("cloud", needs_url), "cloud")
    assert str(raised.value) == (
        "The cloud engine (plugin painter) needs the setting 'url': add it to the [engine.backends.cloud] table "
        "of the config."
    )


def test_a_job_without_an_id_is_named():
    class NoIdJob:
        def events(self): ...
        def result(self): ...
        def cancel(self): ...

    engine = opened(
        host_with("paint", lambda settings: type("E", (PaintEngine,), {"submit": lambda self, r: NoIdJob()})()), "paint"
    )
    with pytest.raises(
        EngineError, match=r"The paint engine \(plugin painter\): its submit\(\) gave a job that lacks id"
    ):
        engine.submit(Request(prompt="a fox"))


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (lambda r: "an image", "gave a str, not a dreamtray.api.Result, from job.result()."),
        (lambda r: {"images": []}, "gave an invalid Result (request: Field required; seeds: Field required"),
        (lambda r: Result(request=r, images=[png(), png()], seeds=[1], model="m", sampler=""), "2 images and 1 seeds"),
        (
            lambda r: Result(request=r, images=[b"GIF89a"], seeds=[1], model="m", sampler=""),
            "images[0] is not PNG bytes",
        ),
        (lambda r: 1 / 0, "failed in result(): ZeroDivisionError: division by zero"),
    ],
)
def test_a_bad_result_fails_the_job_naming_the_plugin_and_the_field(answer, message):
    class Lazy(PaintEngine):
        def submit(self, request):
            job = DoneJob(None)
            job.result = lambda: answer(request)
            return job

    engine = opened(host_with("paint", lambda settings: Lazy()), "paint")
    with pytest.raises(JobFailed) as raised:
        engine.submit(Request(prompt="a fox")).result()
    assert str(raised.value).startswith("The paint engine (plugin painter)") and message in str(raised.value)


def test_a_sampler_that_is_no_sampler_name_is_left_out_with_a_warning():
    answer = lambda r: Result(request=r, images=[png()], seeds=[1], model="m", sampler="Fancy 9000")  # noqa: E731
    result = (
        opened(host_with("paint", lambda settings: PaintEngine(answer)), "paint").submit(Request(prompt="x")).result()
    )
    assert result.sampler == ""
    assert result.warnings[0].startswith(
        "The paint engine (plugin painter) gave Result.sampler 'Fancy 9000', not a sampler name"
    )
