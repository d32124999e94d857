"""PNG metadata: what we write, what our reader and an independent A1111 parser read back, and bad files."""

from __future__ import annotations

import io
import json
import struct
import zlib

import pytest
from PIL import Image
from png_samples import A1111_TEXT, COMFYUI_GRAPH, a1111_png, comfyui_png, pixels, png_bytes

from dreamtray.images.metadata import (
    AUTOMATIC1111,
    COMFYUI,
    DREAMTRAY,
    CorruptImageError,
    MetadataError,
    NoMetadataError,
    add_metadata,
    read_metadata,
    reproduce_image,
    request_from_image,
    request_from_metadata,
)
from dreamtray.request import Request, RequestError


def reference_parse(text: str) -> dict:
    """The A1111 `parameters` format, parsed from its description alone, character by character.

    The last line holds `Key: value` pairs joined by ", "; a value that starts with a double quote is a
    JSON string. Lines before it are the prompt, up to a line that starts with "Negative prompt: ",
    which starts the negative prompt.
    """
    *body, settings_line = text.split("\n")
    negative_at = next((i for i, line in enumerate(body) if line.startswith("Negative prompt: ")), len(body))
    prompt = "\n".join(body[:negative_at])
    negative = "\n".join(body[negative_at:]).removeprefix("Negative prompt: ")
    settings = {}
    position = 0
    decoder = json.JSONDecoder()
    while position < len(settings_line):
        colon = settings_line.index(": ", position)
        key = settings_line[position:colon]
        position = colon + 2
        if settings_line.startswith('"', position):
            value, position = decoder.raw_decode(settings_line, position)
        else:
            end = settings_line.find(", ", position)
            end = len(settings_line) if end == -1 else end
            value, position = settings_line[position:end], end
        settings[key] = value
        if settings_line.startswith(", ", position):
            position += 2
    return {"prompt": prompt, "negative": negative, "settings": settings}


def chunk_list(png: bytes) -> list[tuple[int, bytes, bytes]]:
    """(offset, type, data) of every chunk, read with struct alone."""
    found, position = [], 8
    while position < len(png):
        length, kind = struct.unpack(">I4s", png[position : position + 8])
        found.append((position, kind, png[position + 8 : position + 8 + length]))
        position += 12 + length
    return found


def write(request: Request, *, model: str = "sd-turbo", sampler: str = "Euler a", png: bytes | None = None) -> bytes:
    return add_metadata(png or png_bytes(), request, model=model, sampler=sampler)


def test_parameters_text_has_the_exact_a1111_layout():
    request = Request(prompt="a red fox", negative_prompt="blurry", steps=4, guidance=7.0, seed=42)
    text = read_metadata(write(request)).texts["parameters"]
    assert text == (
        "a red fox\nNegative prompt: blurry\n"
        "Steps: 4, Sampler: Euler a, CFG scale: 7, Seed: 42, Size: 64x48, Model: sd-turbo"
    )
    without_negative = read_metadata(write(request.model_copy(update={"negative_prompt": ""}))).texts["parameters"]
    assert without_negative.splitlines()[0] == "a red fox"
    assert "Negative prompt" not in without_negative


def test_round_trip_through_our_reader_keeps_request_settings_and_pixels():
    original = png_bytes()
    request = Request(prompt="a red fox", negative_prompt="blurry", steps=4, guidance=7.5, seed=42, count=3)
    written = write(request, png=original)
    metadata = read_metadata(written)
    assert metadata.source == DREAMTRAY
    assert (metadata.width, metadata.height) == (64, 48)
    assert metadata.request == request.model_copy(update={"count": 1})
    parameters = metadata.parameters
    assert (parameters.prompt, parameters.negative_prompt) == ("a red fox", "blurry")
    assert (parameters.steps, parameters.cfg_scale, parameters.seed) == (4, 7.5, 42)
    assert (parameters.sampler, parameters.model, parameters.width, parameters.height) == (
        "Euler a",
        "sd-turbo",
        64,
        48,
    )
    assert pixels(written) == pixels(original)
    assert request_from_metadata(metadata) == request.model_copy(update={"count": 1})


def test_pillow_reads_our_chunks_and_checks_their_crcs():
    request = Request(prompt="猫と🐈, watercolour", seed=7, steps=2)
    written = write(request)
    with Image.open(io.BytesIO(written)) as image:
        image.load()
        texts = dict(image.text)
    assert texts["parameters"].startswith("猫と🐈, watercolour\n")
    assert Request.model_validate_json(texts["dreamtray"]) == request
    kinds = [kind for _, kind, _ in chunk_list(written)]
    assert kinds[0] == b"IHDR" and kinds[1:3] == [b"iTXt", b"iTXt"]


def test_a_large_request_is_stored_compressed_and_read_back():
    init = png_bytes(texts={"Comment": "".join(chr(33 + (i * 7919) % 90) for i in range(6000))})
    request = Request(prompt="repaint this", seed=1, init_image=init, strength=0.4)
    written = write(request)
    dreamtray_chunk = next(data for _, kind, data in chunk_list(written) if data.startswith(b"dreamtray\0"))
    assert dreamtray_chunk[len(b"dreamtray\0")] == 1  # the iTXt compression flag
    metadata = read_metadata(written)
    assert metadata.request.init_image == init
    assert metadata.parameters.extra == {"Denoising strength": "0.4"}


def test_writing_twice_replaces_our_chunks_instead_of_adding_more():
    first = write(Request(prompt="first", seed=1))
    second = write(Request(prompt="second", seed=2), png=first)
    keys = [data.split(b"\0")[0] for _, kind, data in chunk_list(second) if kind in (b"tEXt", b"iTXt")]
    assert sorted(keys) == [b"dreamtray", b"parameters"]
    assert read_metadata(second).request.prompt == "second"


def test_further_text_chunks_are_carried_and_replace_their_namesakes():
    lineage = json.dumps([{"file": "parent.png", "parameters": "a fox\nSteps: 1, Seed: 1, Size: 64x48"}])
    first = add_metadata(
        png_bytes(texts={"dreamtray-lineage": "old", "Software": "GIMP"}),
        Request(prompt="a fox, refined", seed=3),
        model="tiny",
        sampler="Euler",
        texts={"dreamtray-lineage": lineage},
    )
    texts = read_metadata(first).texts
    assert texts["dreamtray-lineage"] == lineage
    assert texts["Software"] == "GIMP"
    keys = [data.split(b"\0")[0] for _, kind, data in chunk_list(first) if kind in (b"tEXt", b"iTXt")]
    assert sorted(keys) == [b"Software", b"dreamtray", b"dreamtray-lineage", b"parameters"]


HOSTILE = [
    Request(prompt="a, b: c", seed=1),
    Request(prompt='she said "stop", then: "go"', negative_prompt='no "quotes", please: none', seed=2),
    Request(prompt="line one\nline two, with comma\nthird: line", negative_prompt="bad\nworse, worst", seed=3),
    Request(prompt="Steps: 1, Sampler: x, CFG scale: 1, Seed: 1", seed=4),
    Request(prompt="ünïcödé — 雪の狐 🦊", negative_prompt="ぼやけ", seed=2**32 - 1),
]
HOSTILE_MODELS = [
    ("model, with comma", "Euler a"),
    ("org/model:v2", "DPM++ 2M, Karras"),
    ('say "hi"', "sampler: colon"),
    ("two\nlines", 'quote " inside'),
    ('"starts and ends with quotes"', " padded "),
    ("C:\\models\\x.safetensors", "tab\there"),
]


@pytest.mark.parametrize("request_", HOSTILE)
@pytest.mark.parametrize(("model", "sampler"), HOSTILE_MODELS)
def test_hostile_values_survive_and_the_reference_parser_agrees(request_, model, sampler):
    request = request_.model_copy(update={"steps": 5, "guidance": 3.5})
    metadata = read_metadata(write(request, model=model, sampler=sampler))
    parameters = metadata.parameters
    assert (parameters.prompt, parameters.negative_prompt) == (request.prompt, request.negative_prompt)
    assert (parameters.model, parameters.sampler, parameters.seed) == (model, sampler, request.seed)
    assert metadata.request == request

    text = metadata.texts["parameters"]
    for key, value in (("Sampler", sampler), ("Model", model)):
        if any(char in value for char in ",:\n"):
            assert f"{key}: {json.dumps(value, ensure_ascii=False)}" in text

    reference = reference_parse(text)
    assert reference["prompt"] == request.prompt
    assert reference["negative"] == request.negative_prompt
    assert reference["settings"] == {
        "Steps": "5",
        "Sampler": sampler,
        "CFG scale": "3.5",
        "Seed": str(request.seed),
        "Size": "64x48",
        "Model": model,
    }


def test_what_the_a1111_format_cannot_hold_comes_back_from_the_request_chunk():
    request = Request(prompt="top\nNegative prompt: not really\n  indented line", seed=9)
    metadata = read_metadata(write(request))
    assert metadata.request == request
    assert request_from_metadata(metadata).prompt == request.prompt


def test_reads_a_png_made_by_automatic1111():
    metadata = read_metadata(a1111_png())
    assert metadata.source == AUTOMATIC1111
    assert metadata.request is None
    parameters = metadata.parameters
    assert parameters.prompt == "masterpiece, a lighthouse at dusk, <lora:film:0.8>"
    assert parameters.negative_prompt == "lowres, bad anatomy"
    assert (parameters.steps, parameters.sampler, parameters.cfg_scale) == (20, "DPM++ 2M Karras", 7.0)
    assert (parameters.seed, parameters.width, parameters.height) == (1234567890, 512, 768)
    assert parameters.model == "v1-5-pruned-emaonly"
    assert parameters.extra == {"Model hash": "6ce0161689", "Lora hashes": "film: 0a1b2c3d", "Version": "v1.6.0"}
    assert reference_parse(A1111_TEXT)["settings"]["Lora hashes"] == "film: 0a1b2c3d"


def test_a_request_from_an_a1111_png_keeps_its_settings_but_not_its_model_names(tmp_path):
    path = tmp_path / "00001-1234567890.png"
    path.write_bytes(a1111_png())
    found = reproduce_image(path)
    assert (
        found.request
        == request_from_image(path)
        == Request(
            prompt="masterpiece, a lighthouse at dusk, <lora:film:0.8>",
            negative_prompt="lowres, bad anatomy",
            steps=20,
            guidance=7.0,
            seed=1234567890,
            width=512,
            height=768,
            sampler="DPM++ 2M Karras",
        )
    )
    assert found.warnings == (
        "Model: 'v1-5-pruned-emaonly' is that program's checkpoint; dreamtray's configured model is used",
        "LoRAs not applied: Lora hashes: film: 0a1b2c3d",
    )


def test_a1111_settings_outside_our_limits_give_a_request_error_naming_the_file(tmp_path):
    path = tmp_path / "huge.png"
    path.write_bytes(a1111_png("a castle\nSteps: 500, Sampler: Euler, CFG scale: 7, Seed: 1, Size: 512x512"))
    with pytest.raises(RequestError, match=r"huge\.png.*steps"):
        request_from_image(path)


def test_reads_comfyui_metadata_and_its_prompts():
    metadata = read_metadata(comfyui_png())
    assert metadata.source == COMFYUI
    assert set(metadata.prompts) == {"a red fox in snow", "blurry, watermark"}
    parameters = metadata.parameters
    assert (parameters.prompt, parameters.negative_prompt) == ("a red fox in snow", "blurry, watermark")
    assert (parameters.seed, parameters.steps, parameters.cfg_scale, parameters.sampler) == (8566257, 25, 8.0, "euler")
    assert parameters.model == "sd_xl_base_1.0.safetensors"
    assert request_from_metadata(metadata).seed == 8566257


def test_comfyui_workflow_alone_still_shows_its_prompt_texts():
    metadata = read_metadata(comfyui_png(graph=None))
    assert metadata.source == COMFYUI
    assert metadata.prompts == ("a red fox in snow", "blurry, watermark")


def test_comfyui_graph_that_is_not_json_is_a_warning_not_a_crash():
    metadata = read_metadata(png_bytes(texts={"prompt": "{not json", "workflow": json.dumps({"nodes": []})}))
    assert metadata.source == COMFYUI
    assert metadata.prompts == ()
    assert any("not a JSON object" in warning for warning in metadata.warnings)
    assert COMFYUI_GRAPH  # the sample graph itself is untouched


def test_png_without_metadata_is_reported_clearly(tmp_path):
    path = tmp_path / "plain.png"
    path.write_bytes(png_bytes())
    with pytest.raises(NoMetadataError, match=r"plain\.png: no generation metadata.*no text chunks"):
        read_metadata(path)
    path.write_bytes(png_bytes(texts={"Software": "GIMP"}))
    with pytest.raises(NoMetadataError, match=r"'Software'"):
        read_metadata(path)
    with pytest.raises(NoMetadataError, match="plain.png"):
        request_from_image(path)


def test_flipped_bytes_inside_a_text_chunk_are_reported_with_the_chunk(tmp_path):
    written = bytearray(write(Request(prompt="a red fox", seed=1)))
    offset, _, _ = next(c for c in chunk_list(bytes(written)) if c[2].startswith(b"parameters\0"))
    written[offset + 8 + 12] ^= 0xFF  # a byte of the prompt
    path = tmp_path / "flipped.png"
    path.write_bytes(bytes(written))
    with pytest.raises(CorruptImageError, match=rf"flipped\.png: chunk 'tEXt' at byte {offset} is damaged.*CRC"):
        read_metadata(path)


def test_a_bad_crc_is_reported(tmp_path):
    written = bytearray(write(Request(prompt="a red fox", seed=1)))
    offset, _, data = next(c for c in chunk_list(bytes(written)) if c[1] == b"IDAT")
    crc_at = offset + 8 + len(data)
    written[crc_at : crc_at + 4] = struct.pack(">I", zlib.crc32(b"IDAT" + data) ^ 1)
    with pytest.raises(CorruptImageError, match="chunk 'IDAT'.*CRC"):
        read_metadata(bytes(written), name="bad-crc.png")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\xff\xd8\xff\xe0 a JPEG", "not a PNG file"),
        (b"", "not a PNG file"),
        (png_bytes()[:-20], "truncated"),
        (png_bytes()[:40], "truncated"),
    ],
)
def test_files_that_are_not_whole_pngs_are_reported(data, message):
    with pytest.raises(CorruptImageError, match=message):
        read_metadata(data, name="x.png")


def test_a_missing_file_is_a_metadata_error(tmp_path):
    with pytest.raises(MetadataError, match="gone.png: cannot be read"):
        read_metadata(tmp_path / "gone.png")


def test_a_compressed_text_bomb_is_refused():
    bomb = zlib.compress(b"a" * (20 * 1024 * 1024))
    chunk = b"parameters\0\0" + bomb
    png = png_bytes()
    insert = struct.pack(">I", len(chunk)) + b"zTXt" + chunk + struct.pack(">I", zlib.crc32(b"zTXt" + chunk))
    with pytest.raises(CorruptImageError, match="inflates beyond"):
        read_metadata(png[:33] + insert + png[33:])


def test_a_damaged_request_chunk_falls_back_to_the_parameters_with_a_warning():
    png = png_bytes(texts={"parameters": "a fox\nSteps: 3, Sampler: Euler, Seed: 5, Size: 64x48", "dreamtray": "{"})
    metadata = read_metadata(png)
    assert metadata.request is None
    assert metadata.parameters.prompt == "a fox"
    assert any("'dreamtray' chunk holds no valid request" in warning for warning in metadata.warnings)


def test_a_damaged_request_chunk_alone_is_reported_with_the_file_name():
    png = png_bytes(texts={"dreamtray": '{"prompt": ""}'})
    with pytest.raises(NoMetadataError, match=r"lone\.png: its only generation metadata is unreadable.*prompt"):
        read_metadata(png, name="lone.png")
