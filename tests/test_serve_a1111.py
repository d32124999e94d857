"""`dreamtray serve` as an AUTOMATIC1111 server: the `webuiapi` client unchanged against it (txt2img, img2img,
options, models, samplers, styles, interrupt), with real diffusers on `tiny`; its PNGs read with A1111's infotext
format; basic auth; unsupported fields refused in A1111's error shape; and both image APIs along the one route
(a counting plugin sees each request's `prepare_request` once and each image's `image_generated` once)."""

from __future__ import annotations

import base64
import io
import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import openai
import pytest
import webuiapi
from PIL import Image
from remote_helpers import ServeProcess
from test_metadata import reference_parse

from dreamtray.images.metadata import read_metadata

STYLES_CSV = "name,prompt,negative_prompt\nWatercolor,watercolor painting of {prompt},photo\n"
SMALL = {"width": 64, "height": 64, "steps": 2}
COUNTER = Path(__file__).parent / "plugins" / "counter"


@pytest.fixture(scope="module")
def counter_site(tmp_path_factory) -> Path:
    """The counting plugin, installed into a folder to put on PYTHONPATH."""
    site = tmp_path_factory.mktemp("counter-site")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "--target", str(site),
         str(COUNTER)],
        check=True,
    )  # fmt: skip
    return site


@contextmanager
def serving(root: Path, site: Path, *args: str) -> Iterator[ServeProcess]:
    """`dreamtray serve` with the serving machine's styles and the counting plugin; its log in `counter_log`."""
    styles = root / "data" / "dreamtray" / "styles"
    styles.mkdir(parents=True)
    (styles / "mine.csv").write_text(STYLES_CSV, encoding="utf-8")
    env = {"PYTHONPATH": str(site), "DREAMTRAY_PLUGINS": "counter", "COUNTER_LOG": str(root / "counter.log")}
    process = ServeProcess(root, *args, extra_env=env)
    process.counter_log = root / "counter.log"
    try:
        process.wait_ready(timeout=120)
        yield process
    finally:
        process.stop()


def hook_calls(process: ServeProcess, hook: str) -> list[dict]:
    if not process.counter_log.exists():
        return []
    entries = [json.loads(line) for line in process.counter_log.read_text().splitlines()]
    return [entry for entry in entries if entry["hook"] == hook]


@pytest.fixture(scope="module")
def served(tmp_path_factory, counter_site):
    with serving(tmp_path_factory.mktemp("serve-a1111"), counter_site, "--rate-limit", "0") as process:
        yield process  # no rate limit: the tests poll /progress


@pytest.fixture(scope="module")
def api(served) -> webuiapi.WebUIApi:
    return webuiapi.WebUIApi(port=served.port, username="dreamtray", password=served.token, sampler="Euler a")


@pytest.fixture
def http(served):
    with httpx.Client(base_url=f"{served.url}/sdapi/v1", auth=("me", served.token), timeout=300) as client:
        yield client


def test_txt2img_answers_as_a1111_with_parameters_in_each_png(api, served):
    result = api.txt2img(prompt="a red fox", styles=["Watercolor"], seed=7, cfg_scale=5, batch_size=2, **SMALL)
    assert [image.size for image in result.images] == [(64, 64), (64, 64)]
    assert result.info["all_seeds"] == [7, 8] and result.info["seed"] == 7
    assert result.info["prompt"] == "watercolor painting of a red fox, counted"
    assert result.parameters["prompt"] == "a red fox" and result.parameters["batch_size"] == 2
    for png, seed, infotext in zip(result.json["images"], (7, 8), result.info["infotexts"], strict=True):
        text = Image.open(io.BytesIO(base64.b64decode(png))).text["parameters"]
        assert text == infotext
        parsed = reference_parse(text)
        assert parsed["prompt"] == "watercolor painting of a red fox, counted"
        assert parsed["negative"] == "photo"
        settings = parsed["settings"]
        assert (settings["Steps"], settings["Sampler"], settings["CFG scale"]) == ("2", "Euler a", "5")
        assert (settings["Seed"], settings["Size"], settings["Model"]) == (str(seed), "64x64", "tiny")
        assert json.loads(settings["Styles array"]) == ["Watercolor"]
    kept = sorted(served.gallery.glob("*.png"))
    assert any(read_metadata(path).parameters.seed == 8 for path in kept), "serve --gallery always keeps them"


def test_img2img_takes_a_base64_init_image(api):
    source = Image.new("RGB", (96, 80), (200, 30, 30))
    result = api.img2img(images=[source], prompt="a red square", denoising_strength=0.5, seed=3, **SMALL)
    assert result.images[0].size == (64, 64)
    settings = reference_parse(result.images[0].info["parameters"])["settings"]
    assert settings["Denoising strength"] == "0.5" and settings["Seed"] == "3"
    assert result.parameters["init_images"] is None, "A1111 leaves the init images out unless asked"


def test_options_models_samplers_styles(api, http):
    assert "tiny" in api.util_get_model_names()
    assert api.get_options()["sd_model_checkpoint"] == "tiny"
    assert {"Euler a", "DPM++ 2M"} <= set(api.util_get_sampler_names())
    assert {"automatic", "karras"} <= set(api.util_get_scheduler_names())
    assert {"name": "Watercolor", "prompt": "watercolor painting of {prompt}", "negative_prompt": "photo"} in (
        api.get_prompt_styles()
    )
    assert api.get_upscalers() == []
    api.set_options({"sd_model_checkpoint": "tiny", "show_progress_every_n_steps": 1})
    assert api.get_options()["show_progress_every_n_steps"] == 1
    missing = http.post("/options", json={"sd_model_checkpoint": "no-such-model"})
    assert missing.status_code == 404 and "Unknown model 'no-such-model'" in missing.json()["detail"]
    assert api.get_options()["sd_model_checkpoint"] == "tiny", "a refused switch changes nothing"
    refused = http.post("/options", json={"sd_vae": "kl-f8.safetensors"})
    assert refused.status_code == 422 and "sd_vae" in refused.json()["detail"]


def test_what_front_ends_send_is_taken(served, http):
    options = http.get("/options").json()  # Open WebUI switches the model by posting the whole options back
    options["sd_model_checkpoint"] = "tiny"
    assert http.post("/options", json=options).status_code == 200
    body = {  # SillyTavern's txt2img body (its image generation extension), at a small size
        "prompt": "a lamp", "negative_prompt": "", "sampler_name": "Euler", "scheduler": "Automatic", "steps": 2,
        "cfg_scale": 7, "width": 64, "height": 64, "restore_faces": False, "enable_hr": False, "hr_upscaler": "Latent",
        "hr_scale": 2, "denoising_strength": 0.7, "hr_second_pass_steps": 0, "n_iter": 1, "s_churn": 0.0,
        "s_min_uncond": 0.0, "s_noise": 1.0, "s_tmax": None, "s_tmin": 0.0, "seed": 5,
        "override_settings": {"CLIP_stop_at_last_layers": 1, "sd_vae": "Automatic"},
        "override_settings_restore_afterwards": True, "save_images": True, "send_images": True,
        "url": "http://127.0.0.1:7860", "auth": f"me:{served.token}",  # its own fields, sent along
    }  # fmt: skip
    answer = http.post("/txt2img", json=body)
    assert answer.status_code == 200 and json.loads(answer.json()["info"])["all_seeds"] == [5]
    assert "auth" not in answer.json()["parameters"], "only A1111's fields are echoed"
    assert http.get("/latent-upscale-modes").json() == [], "SillyTavern lists them with the upscalers"
    assert http.get(f"{served.url}/internal/ping").json() == {}


def test_interrupt_answers_the_running_image_as_far_as_it_got(api, http):
    answers = []
    worker = threading.Thread(
        target=lambda: answers.append(
            http.post("/txt2img", json={"prompt": "a long one", "steps": 150, "width": 256, "height": 256,
                                        "batch_size": 8, "override_settings": {"show_progress_every_n_steps": 1}})
        )
    )  # fmt: skip
    worker.start()
    deadline = time.monotonic() + 120
    while not (progress := http.get("/progress").json()).get("current_image"):
        assert "state" in progress, progress
        assert time.monotonic() < deadline, "no preview while the request ran"
        time.sleep(0.05)
    assert progress["state"]["sampling_step"] >= 1
    assert 0 < progress["progress"] < 1 and progress["eta_relative"] >= 0
    assert Image.open(io.BytesIO(base64.b64decode(progress["current_image"]))).format == "PNG"
    api.interrupt()
    worker.join(timeout=120)
    answer = answers[0]
    assert answer.status_code == 200, answer.text  # as A1111: the image as far as it got, not an error
    assert len(answer.json()["images"]) == 1, "the batch's other seven were not begun"
    picture = Image.open(io.BytesIO(base64.b64decode(answer.json()["images"][0])))
    assert picture.size == (256, 256) and "a long one" in picture.text["parameters"]
    info = json.loads(answer.json()["info"])
    assert len(info["all_seeds"]) == 1 and any(w.startswith("Interrupted at step ") for w in info["warnings"])
    assert http.get("/progress").json()["state"]["interrupted"] is True


def test_progress_when_idle(http):
    idle = http.get("/progress").json()
    assert idle["progress"] == 0 and idle["state"]["job_count"] == 0 and idle["current_image"] is None


def test_png_info_reads_a_served_image(api, http):
    result = api.txt2img(prompt="a blue fish", seed=11, **SMALL)
    answer = http.post("/png-info", json={"image": result.json["images"][0]}).json()
    assert answer["info"] == result.info["infotexts"][0]
    assert answer["parameters"]["Seed"] == "11" and answer["parameters"]["Size-1"] == "64"
    assert "dreamtray" in answer["items"], "the full request rides along"


def test_basic_auth_and_bearer_are_the_token(served):
    url = f"{served.url}/sdapi/v1/sd-models"
    assert httpx.get(url, auth=("anyone", served.token)).status_code == 200
    assert httpx.get(url, headers={"Authorization": f"Bearer {served.token}"}).status_code == 200
    wrong = httpx.get(url, auth=("anyone", "wrong"))
    assert wrong.status_code == 401 and wrong.headers["www-authenticate"] == "Basic"
    assert wrong.json() == {
        "error": "HTTPException",
        "detail": "missing or wrong token",
        "body": "",
        "errors": "missing or wrong token",
    }
    assert httpx.get(url).status_code == 401


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"enable_hr": True}, "enable_hr: hires fix"),
        ({"alwayson_scripts": {"ControlNet": {"args": [{"module": "canny"}]}}}, "'ControlNet'"),
        ({"restore_faces": True}, "restore_faces: face restoration"),
        ({"subseed_strength": 0.3}, "subseed_strength: a variation seed"),
        ({"script_name": "x/y/z plot"}, "script_name"),
        ({"override_settings": {"sd_vae": "x"}}, "sd_vae"),
        ({"sampler_name": "DPM adaptive"}, "Sampler not found"),
        ({"scheduler": "polyexponential"}, "scheduler 'polyexponential'"),
        ({"eta": 0.5}, "eta"),
        ({"batch_size": 4, "n_iter": 3}, "batch_size x n_iter"),
    ],
)
def test_unsupported_fields_are_refused_by_name(http, fields, named):
    answer = http.post("/txt2img", json={"prompt": "a tree", **SMALL, **fields})
    assert answer.status_code in (404, 422)
    assert set(answer.json()) == {"error", "detail", "body", "errors"}
    assert named in answer.json()["detail"]


def _png_claiming(width: int, height: int) -> bytes:
    """A PNG header for a huge image, with no pixels behind it (a decompression bomb's front)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


@pytest.mark.parametrize(
    ("init", "status", "named"),
    [
        (base64.b64encode(b"just some text").decode(), 422, "not an image"),
        ("not base64 at all!", 422, "not base64"),
        (base64.b64encode(_png_claiming(5000, 5000)).decode(), 413, "5000x5000"),
        ("https://example.com/cat.png", 422, "URL"),
    ],
)
def test_bad_init_images_are_refused(http, init, status, named):
    answer = http.post("/img2img", json={"prompt": "a tree", "init_images": [init], **SMALL})
    assert answer.status_code == status and named in answer.json()["detail"]


def test_each_served_image_passes_the_route_once(served, api):
    client = openai.OpenAI(base_url=f"{served.url}/v1", api_key=served.token, max_retries=0, timeout=300)
    answer = client.images.generate(
        prompt="count openai", model="tiny", size="64x64", n=2, extra_body={"seed": 21, "steps": 1}
    )
    assert answer.data[0].revised_prompt == "count openai, counted"
    assert "parameters" in Image.open(io.BytesIO(base64.b64decode(answer.data[0].b64_json))).text
    api.txt2img(prompt="count a1111", seed=31, batch_size=2, **SMALL)
    expected = {("count openai, counted", 21), ("count openai, counted", 22), ("count a1111, counted", 31),
                ("count a1111, counted", 32)}  # fmt: skip
    generated = wait_for_images(served, expected)
    seen = [(e["prompt"], e["seed"]) for e in generated]
    prepared = [e["prompt"] for e in hook_calls(served, "prepare_request")]
    assert prepared.count("count openai") == 1 and prepared.count("count a1111") == 1
    assert sorted(s for s in seen if s in expected) == sorted(expected), "each image exactly once"
    paths = [e["path"] for e in generated if (e["prompt"], e["seed"]) in expected]
    assert all(Path(path).parent == served.gallery for path in paths)


def wait_for_images(process: ServeProcess, expected: set[tuple[str, int]]) -> list[dict]:
    """The image_generated calls once those of `expected` (prompt, seed) are all in (they run on threads of their
    own, after the answer), or after 30 s."""
    deadline = time.monotonic() + 30
    while True:
        generated = hook_calls(process, "image_generated")
        if expected <= {(e["prompt"], e["seed"]) for e in generated} or time.monotonic() > deadline:
            return generated
        time.sleep(0.05)


def test_gallery_asked_keeps_what_a1111_requests_ask_for(tmp_path, counter_site):
    with serving(tmp_path, counter_site, "--gallery", "asked") as process:
        api = webuiapi.WebUIApi(port=process.port, username="dreamtray", password=process.token)
        kept = api.txt2img(prompt="keep me", seed=41, save_images=True, **SMALL)
        passing = api.txt2img(prompt="pass me", seed=42, **SMALL)
        generated = wait_for_images(process, {("keep me, counted", 41), ("pass me, counted", 42)})
        client = openai.OpenAI(base_url=f"{process.url}/v1", api_key=process.token, max_retries=0, timeout=300)
        client.images.generate(prompt="openai asks not", size="64x64", extra_body={"seed": 43, "steps": 1})
    paths = {e["seed"]: e["path"] for e in generated}
    assert Path(paths[41]).parent == process.gallery and paths[42] is None
    assert [path.name for path in process.gallery.glob("*.png")] == [Path(paths[41]).name]
    for result in (kept, passing):
        assert "Seed: " in result.images[0].info["parameters"], "metadata whether kept or not"


def test_unknown_style_names_the_closest(http):
    answer = http.post("/txt2img", json={"prompt": "a tree", "styles": ["Watercolour"], **SMALL})
    assert answer.status_code == 400 and "the closest are 'Watercolor'" in answer.json()["detail"]
