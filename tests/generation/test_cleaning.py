from __future__ import annotations

import pytest

from hf_megadocs.generation.cleaning import clean_output, clean_text
from hf_megadocs.generation.prompts import get_prompt
from hf_megadocs.generation.requests import make_request
from hf_megadocs.records import RawOutput

BODY = "The Hume Highway was closed after a bushfire.\n\nCrews worked through the night."


@pytest.mark.parametrize(
    "raw, text, flags",
    [
        (BODY, BODY, ()),
        (f"Sure! Here is the rephrased text:\n\n{BODY}", BODY, ("preamble_stripped",)),
        (
            f"Certainly.\nHere's a simpler version of the document.\n{BODY}",
            BODY,
            ("preamble_stripped",),
        ),
        (f"**Rewritten text:**\n{BODY}", BODY, ("preamble_stripped",)),
        (
            f"Below is the article:\n{BODY}\n\nI hope this helps!",
            BODY,
            ("preamble_stripped", "postamble_stripped"),
        ),
        (f"{BODY}\nLet me know if you need anything else.", BODY, ("postamble_stripped",)),
        (f"```markdown\n{BODY}\n```", BODY, ("unwrapped",)),
        (f'"{BODY}"', BODY, ("unwrapped",)),
        (f"Sure! Here it is:\n```\n{BODY}\n```", BODY, ("preamble_stripped", "unwrapped")),
        ("   \n ", "", ("empty",)),
        ("I'm sorry, but I can't help with that request.", None, ("refusal",)),
        ("I cannot rephrase this document.", None, ("refusal",)),
        ("As an AI language model, I do not have opinions.", None, ("refusal",)),
    ],
)
def test_clean_text_cases(raw, text, flags):
    cleaned, got = clean_text(raw)
    assert got == flags
    assert cleaned == (raw.strip() if text is None else text)


@pytest.mark.parametrize(
    "content",
    [
        "Here is where the river meets the sea, a town of two thousand people.\nIt grew.",
        '"Quoted" words open this article, which continues "here".',
        "Okay Corral is the site of a famous gunfight.\nIt is in Arizona.",
        "Sorry Day is observed in Australia on 26 May.",
        "Sure!",
    ],
)
def test_content_that_looks_like_chatter_is_kept(content):
    cleaned, flags = clean_text(content)
    assert cleaned == content and flags == ()


def _request(dummy_backend, small_sampling):
    return make_request(
        "doc-0",
        get_prompt("wiki"),
        {"document": "x"},
        sample_index=1,
        backend=dummy_backend,
        sampling=small_sampling,
    )


def test_clean_output_builds_the_generation(dummy_backend, small_sampling):
    request = _request(dummy_backend, small_sampling)
    raw = RawOutput(
        text=f"Sure! Here is the rewritten text:\n{BODY}",
        prompt_tokens=50,
        completion_tokens=16,
        finish_reason="length",
    )
    generation = clean_output(raw, request, "dummy")
    assert generation.key == request.key and generation.sample_index == 1
    assert generation.text == BODY and generation.raw_text == raw.text
    assert generation.flags == ("preamble_stripped", "truncated")
    assert generation.sampling == request.sampling.key() and generation.backend == "dummy"
    assert generation.usable


def test_errors_and_refusals_are_flagged(dummy_backend, small_sampling):
    request = _request(dummy_backend, small_sampling)
    error = clean_output(RawOutput("HTTP 500 after 5 retries", 0, 0, "error"), request, "openai")
    assert error.flags == ("error",) and error.text == "" and error.raw_text.startswith("HTTP 500")
    refusal = clean_output(RawOutput("I can't assist with that.", 10, 6, "stop"), request, "vllm")
    assert refusal.flags == ("refusal",) and not refusal.usable


def test_echoed_delimiters_and_lead_ins_are_removed():
    cleaned, flags = clean_text(
        f"For a completed and edited document:\n\n<document>\n{BODY}\n</document>"
    )
    assert cleaned == BODY and flags == ("preamble_stripped", "unwrapped")
