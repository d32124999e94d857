"""A1111 prompt syntax (weights, escapes, BREAK) and prompts of any length, parsed and encoded for real."""

from __future__ import annotations

import pytest
import torch
from fixtures_engine import pixels

from dreamtray.engine.server import prompts
from dreamtray.prompt_syntax import Fragment, check, is_plain, parse, plain_text
from dreamtray.request import Request

SMALL = {"width": 64, "height": 64}


def flat(prompt: str) -> list[list[tuple[str, float]]]:
    return [[(part.text, round(part.weight, 6)) for part in chunk] for chunk in parse(prompt)]


# The examples of A1111's own parse_prompt_attention docstring (modules/prompt_parser.py), result for result.
@pytest.mark.parametrize(
    ("prompt", "expected"),
    [
        ("normal text", [("normal text", 1.0)]),
        ("an (important) word", [("an ", 1.0), ("important", 1.1), (" word", 1.0)]),
        ("(unbalanced", [("unbalanced", 1.1)]),
        ("\\(literal\\]", [("(literal]", 1.0)]),
        ("(unnecessary)(parens)", [("unnecessaryparens", 1.1)]),
        (
            "a (((house:1.3)) [on] a (hill:0.5), sun, (((sky))).",
            [
                ("a ", 1.0),
                ("house", 1.573),
                (" ", 1.1),
                ("on", 1.0),
                (" a ", 1.1),
                ("hill", 0.55),
                (", sun, ", 1.1),
                ("sky", 1.4641),
                (".", 1.1),
            ],
        ),
    ],
)
def test_attention_syntax_reads_as_a1111_reads_it(prompt, expected):
    assert flat(prompt) == [expected]


def test_square_brackets_nesting_escapes_and_literal_colons():
    assert flat("[cat]") == [[("cat", round(1 / 1.1, 6))]]
    assert flat("[[cat]]") == [[("cat", round(1 / 1.21, 6))]]
    assert flat("((a:1.5) b)") == [[("a", 1.65), (" b", 1.1)]]
    assert flat("ratio 16:9, (x:abc)") == [[("ratio 16:9, ", 1.0), ("x:abc", 1.1)]]
    assert flat("a \\\\ b") == [[("a \\ b", 1.0)]]
    assert flat("[a:b:0.5]") == [[("a:b:0.5", round(1 / 1.1, 6))]], "prompt editing is read as text, as A1111 does"


def test_break_starts_a_new_chunk():
    assert flat("a cat BREAK (a dog:1.2)") == [[("a cat", 1.0)], [("a dog", 1.2)]]
    assert flat("a cat BREAK") == [[("a cat", 1.0)]], "a trailing BREAK adds no empty chunk"
    assert flat("BREAK a cat") == [[], [("a cat", 1.0)]]
    assert flat("BREAKFAST break") == [[("BREAKFAST break", 1.0)]], "only the upper-case word on its own"


def test_plain_text_and_checks():
    assert plain_text("a (fox:1.3) BREAK [snow]") == "a fox\nsnow"
    assert is_plain(parse("a \\(fox\\)")) and not is_plain(parse("a (fox)")) and not is_plain(parse("a BREAK b"))
    assert check("a fox") is None and check("夕暮れの灯台") is None
    assert "no words" in check("() [] BREAK")
    assert parse("")[0] == () and Fragment("x").weight == 1.0


def test_request_with_nothing_but_syntax_is_refused_before_the_engine():
    from dreamtray.request import RequestError

    with pytest.raises(RequestError, match="no words once its A1111 syntax"):
        Request.parse(prompt="( ) BREAK [ ]")


# Encoding on the tiny model (CLIP's byte-level alphabet: one token per byte).


@pytest.fixture(scope="module")
def pipe(runner):
    return runner.ensure_loaded("tiny").pipe


def plain_embeddings(pipe, text: str) -> torch.Tensor:
    embeds, _ = pipe.encode_prompt(text, "cpu", 1, False)
    return embeds


def test_a_plain_prompt_goes_to_the_pipeline_untouched(pipe):
    encoded = prompts.encode(pipe, "a \\(red\\) fox", "", guidance=0.0)
    assert encoded.kwargs == {"prompt": "a (red) fox", "negative_prompt": None}


def test_weight_moves_the_weighted_tokens_away_from_the_empty_prompt(pipe):
    plain = plain_embeddings(pipe, "a cat")
    weighted = prompts.encode(pipe, "a (cat:1.5)", "", guidance=0.0).kwargs["prompt_embeds"]
    lowered = prompts.encode(pipe, "a [cat]", "", guidance=0.0).kwargs["prompt_embeds"]
    assert weighted.shape == plain.shape == (1, 77, 32)
    empty = plain_embeddings(pipe, "")
    cat = slice(2, 5)  # <bos> a</w> c a t</w> <eos> ...
    torch.testing.assert_close(weighted[:, :2], plain[:, :2])
    torch.testing.assert_close(weighted[:, 5:], plain[:, 5:])
    torch.testing.assert_close(weighted[:, cat] - empty[:, cat], 1.5 * (plain[:, cat] - empty[:, cat]))
    without = plain_embeddings(pipe, "a ")
    # [cat] lies between the prompt with the cat and the prompt without it, nearer the former.
    assert 0 < (lowered - plain).norm() < (without - plain).norm()


def test_break_and_long_prompts_are_encoded_in_chunks_of_75_tokens(pipe):
    broken = prompts.encode(pipe, "a cat BREAK a dog", "", guidance=0.0).kwargs["prompt_embeds"]
    assert broken.shape == (1, 154, 32)
    torch.testing.assert_close(broken[:, :77], plain_embeddings(pipe, "a cat"), msg="as diffusers encodes it")
    long = prompts.encode(pipe, "word, " * 50, "blurry", guidance=7.0).kwargs
    assert long["prompt_embeds"].shape == (1, 4 * 77, 32), "250 tokens in chunks of at most 75"
    assert long["negative_prompt_embeds"].shape == long["prompt_embeds"].shape, "the negative padded to match"


def test_a_300_token_prompt_makes_another_image_than_its_first_75_tokens(runner):
    long_prompt = ", ".join(f"w{i:03d}" for i in range(50))  # 298 bytes = tokens on the tiny model
    head = long_prompt[:75]
    full = runner.generate(Request(prompt=long_prompt, seed=3, **SMALL))
    cut = runner.generate(Request(prompt=head, seed=3, **SMALL))
    assert full.warnings == []
    assert full.request.prompt == long_prompt, "the prompt is stored whole"
    assert pixels(full.images[0]) != pixels(cut.images[0])


def test_weights_change_the_image_and_guidance_uses_the_long_negative(runner):
    plain = runner.generate(Request(prompt="a cat", seed=5, **SMALL))
    weighted = runner.generate(Request(prompt="a (cat:1.5)", seed=5, **SMALL))
    assert pixels(plain.images[0]) != pixels(weighted.images[0])
    guided = runner.generate(
        Request(prompt="a (cat:1.2)", negative_prompt="blur, " * 40, guidance=5.0, seed=5, **SMALL)
    )
    assert guided.request.negative_prompt == "blur, " * 40


@pytest.mark.parametrize(
    "prompt",
    [
        "夕暮れの灯台と静かな海、油絵風、柔らかい光、遠くに小さな船が浮かんでいる、空には雲がたなびき、波は穏やかに岸辺に打ち寄せている",
        "x" * 10_000,
    ],
    ids=["japanese-without-spaces", "one-10000-character-word"],
)
def test_any_text_makes_an_image(runner, prompt):
    result = runner.generate(Request(prompt=prompt, seed=1, steps=1, **SMALL))
    assert result.request.prompt == prompt and result.warnings == []
    assert len(pixels(result.images[0])) == 64 * 64 * 3


def tiny_sdxl():
    """An SDXL pipeline with both text encoders, small enough to run here."""
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    from dreamtray.engine.server.tiny import _byte_level_vocab

    torch.manual_seed(0)
    vocab = _byte_level_vocab()

    def config(hidden: int) -> CLIPTextConfig:
        ids = {"bos_token_id": vocab["<|startoftext|>"], "eos_token_id": vocab["<|endoftext|>"]}
        return CLIPTextConfig(
            vocab_size=len(vocab), hidden_size=hidden, intermediate_size=32, num_hidden_layers=2,
            num_attention_heads=2, projection_dim=hidden, pad_token_id=ids["eos_token_id"], **ids,
        )  # fmt: skip

    unet = UNet2DConditionModel(
        sample_size=8, block_out_channels=(32, 64), layers_per_block=1, norm_num_groups=8,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=16 + 32, attention_head_dim=(2, 4), addition_embed_type="text_time",
        addition_time_embed_dim=8, projection_class_embeddings_input_dim=6 * 8 + 32,
    )  # fmt: skip
    vae = AutoencoderKL(block_out_channels=(8,), norm_num_groups=8, latent_channels=4, sample_size=64)
    return StableDiffusionXLPipeline(
        vae=vae, text_encoder=CLIPTextModel(config(16)), text_encoder_2=CLIPTextModelWithProjection(config(32)),
        tokenizer=CLIPTokenizer(vocab=vocab, merges=[], model_max_length=77),
        tokenizer_2=CLIPTokenizer(vocab=vocab, merges=[], model_max_length=77),
        unet=unet, scheduler=EulerDiscreteScheduler(), force_zeros_for_empty_prompt=True,
    )  # fmt: skip


def test_sdxl_uses_both_encoders_for_weighted_and_long_prompts():
    pipe = tiny_sdxl()
    assert prompts.family(pipe) == "sdxl"
    plain, _, pooled, _ = pipe.encode_prompt("a cat", device="cpu", do_classifier_free_guidance=False)
    broken = prompts.encode(pipe, "a cat BREAK tree", "", guidance=0.0).kwargs
    torch.testing.assert_close(broken["prompt_embeds"][:, :77], plain, msg="as diffusers encodes it")
    weighted = prompts.encode(pipe, "a (cat:1.2)", "", guidance=0.0).kwargs
    torch.testing.assert_close(weighted["pooled_prompt_embeds"], pooled, msg="pooled from the plain text")
    long = prompts.encode(pipe, "a (cat:1.3), " + "tree, " * 40, "(blur:1.2)", guidance=4.0).kwargs
    assert long["prompt_embeds"].shape == (1, 3 * 77, 48) == long["negative_prompt_embeds"].shape
    assert long["negative_pooled_prompt_embeds"].shape == (1, 32)
    images = [
        pipe(**prompts.encode(pipe, text, "", guidance=0.0).kwargs, num_inference_steps=1, guidance_scale=0.0,
             height=64, width=64, output_type="np", generator=torch.Generator().manual_seed(1)).images
        for text in ("a cat", "a (cat:1.4)")
    ]  # fmt: skip
    assert (images[0] != images[1]).any()


def test_plain_text_pipelines_warn_when_weights_cannot_be_honoured():
    class Flux:  # no CLIP-only text path: compel cannot weight it
        tokenizer = text_encoder = None

    assert prompts.family(Flux()) == "plain"
    assert prompts.encode(Flux(), "a (fox:1.2) BREAK snow", "", guidance=0.0).kwargs["prompt"] == "a fox\nsnow"
    assert "weights and BREAK are not applied" in prompts.warnings_for(Flux(), "a (fox:1.2)", "")[0]
    assert prompts.warnings_for(Flux(), "a fox", "") == []
