"""The official `openai` client against `dreamtray serve`: dreamtray styles, OpenAI's style values, unknown
models and output formats; the jobs API with styles."""

from __future__ import annotations

import base64
import io

import httpx
import openai
import pytest
from PIL import Image
from remote_helpers import ServeProcess

STYLES_CSV = 'name,prompt,negative_prompt\nWatercolor,watercolor painting of {prompt},photo\nVivid,"{prompt}, vivid",\n'


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("serve")
    styles = root / "data" / "dreamtray" / "styles"
    styles.mkdir(parents=True)
    (styles / "mine.csv").write_text(STYLES_CSV, encoding="utf-8")
    process = ServeProcess(root)
    try:
        process.wait_ready(timeout=120)
        yield process
    finally:
        process.stop()


@pytest.fixture(scope="module")
def client(served) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{served.url}/v1", api_key=served.token, max_retries=0, timeout=300)


SMALL = {"model": "tiny", "size": "64x64", "response_format": "b64_json"}


def test_style_in_extra_body_styles_the_prompt(client):
    answer = client.images.generate(
        prompt="a red fox", extra_body={"style": "watercolor", "seed": 3, "steps": 1}, **SMALL
    )
    assert answer.data[0].revised_prompt == "watercolor painting of a red fox"
    assert Image.open(io.BytesIO(base64.b64decode(answer.data[0].b64_json))).size == (64, 64)


def test_unknown_style_is_a_400_naming_the_closest(client):
    with pytest.raises(openai.BadRequestError) as caught:
        client.images.generate(prompt="a red fox", extra_body={"style": "Watercolour"}, **SMALL)
    assert "unknown style 'Watercolour'; the closest are 'Watercolor'" in caught.value.message


def test_openai_style_values_are_accepted_and_change_nothing(client):
    answer = client.images.generate(prompt="a red fox", style="natural", extra_body={"seed": 3, "steps": 1}, **SMALL)
    assert answer.data[0].revised_prompt == "a red fox"
    assert "style 'natural' is OpenAI's" in answer.model_extra["warnings"][0]
    vivid = client.images.generate(prompt="a red fox", style="vivid", extra_body={"seed": 3, "steps": 1}, **SMALL)
    assert vivid.data[0].revised_prompt == "a red fox, vivid", "a dreamtray style of that name wins"


def test_unknown_model_is_a_404(client):
    with pytest.raises(openai.NotFoundError) as caught:
        client.images.generate(prompt="a red fox", model="no-such-model", size="64x64")
    assert "Unknown model 'no-such-model'" in caught.value.message
    assert caught.value.code == "model_not_found"


@pytest.mark.parametrize(("output_format", "pil_format"), [("png", "PNG"), ("jpeg", "JPEG"), ("webp", "WEBP")])
def test_output_format_is_honoured(client, output_format, pil_format):
    answer = client.images.generate(
        prompt="a red fox", output_format=output_format, extra_body={"seed": 3, "steps": 1}, **SMALL
    )
    assert Image.open(io.BytesIO(base64.b64decode(answer.data[0].b64_json))).format == pil_format


def test_unserved_output_format_is_a_400(client):
    with pytest.raises(openai.BadRequestError, match="output_format: 'gif' is not served"):
        client.images.generate(prompt="a red fox", extra_body={"output_format": "gif"}, **SMALL)


def test_jobs_api_applies_styles_and_refuses_unknown_ones(served):
    headers = {"Authorization": f"Bearer {served.token}"}
    job = {"prompt": "a red fox", "styles": ["Watercolor"], "model": "tiny", "width": 64, "height": 64, "steps": 1}
    with httpx.Client(base_url=served.url, headers=headers, timeout=120) as http:
        created = http.post("/v1/jobs", json=job)
        assert created.status_code == 202
        refused = http.post("/v1/jobs", json=job | {"styles": ["Nope"]})
        assert refused.status_code == 400 and "unknown style 'Nope'" in refused.json()["error"]["message"]
        missing = http.post("/v1/jobs", json=job | {"model": "nobody/../x.safetensors"})
        assert missing.status_code == 404
        while (status := http.get(f"/v1/jobs/{created.json()['id']}").json())["status"] not in ("done", "failed"):
            http.get(f"/v1/jobs/{created.json()['id']}/events")  # waits for the job's events
        assert status["status"] == "done"
        assert status["result"]["request"]["prompt"] == "watercolor painting of a red fox"
        assert status["result"]["request"]["unstyled"] == {"prompt": "a red fox", "negative_prompt": ""}
