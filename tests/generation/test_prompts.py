from __future__ import annotations

import re

import pytest

from hf_megadocs.generation.prompts import PROMPT_IDS, get_prompt, parse_template


def test_every_builtin_prompt_loads_with_expected_fields():
    expected = {pid: {"document"} for pid in PROMPT_IDS}
    expected["rationale"] = {"prefix", "suffix"}
    hashes = set()
    for prompt_id in PROMPT_IDS:
        prompt = get_prompt(prompt_id)
        assert prompt.prompt_id == prompt_id
        assert prompt.fields == expected[prompt_id]
        assert prompt.system and prompt.user.strip()
        assert re.fullmatch(r"[0-9a-f]{16}", prompt.content_hash)
        hashes.add(prompt.content_hash)
    assert len(hashes) == len(PROMPT_IDS)


def test_hash_tracks_every_byte_of_the_wording_and_nothing_else(tmp_path):
    builtin = get_prompt("wiki")
    # The same wording from a file has the built-in's hash: the hash is of the text, not of
    # where it came from (a user's copy of a built-in prompt shares its stored generations).
    copy = tmp_path / "wiki.txt"
    copy.write_text(f"--- system ---\n{builtin.system}\n--- user ---\n{builtin.user}\n")
    assert get_prompt("wiki", copy).content_hash == builtin.content_hash
    a = parse_template("wiki", "--- user ---\nSay {document}")
    b = parse_template("wiki", "--- user ---\nSay: {document}")
    assert a.content_hash != b.content_hash


def test_render_delimits_the_document_and_keeps_braces_literal():
    doc = "Text with {braces} and {document} inside, and </doc> lookalikes."
    messages = get_prompt("wiki").render(document=doc)
    assert [m["role"] for m in messages] == ["system", "user"]
    user = messages[1]["content"]
    assert f"<document>\n{doc}\n</document>" in user
    rationale = get_prompt("rationale").render(prefix="P-TEXT", suffix="S-TEXT")
    assert "<prefix>\nP-TEXT\n</prefix>" in rationale[-1]["content"]
    assert "<suffix>\nS-TEXT\n</suffix>" in rationale[-1]["content"]


def test_an_answer_laid_out_as_the_reformat_prompt_asks_is_what_the_parser_accepts():
    from hf_megadocs.corpora.assembly import parse_reformat

    user = get_prompt("reformat").user
    # The prompt asks for "Topic: " lines, then "Content: " lines, entries separated by a
    # blank line: an answer written exactly so parses into those entries, in order.
    assert '"Topic: "' in user and '"Content: "' in user and "blank line" in user
    answer = "Topic: Floods\nContent: The river rose.\n\nTopic: Cattle\nContent: Moved uphill."
    assert parse_reformat(answer) == [("Floods", "The river rose."), ("Cattle", "Moved uphill.")]
    assert parse_reformat("The river rose and the cattle moved uphill.") is None


def test_render_rejects_missing_and_extra_fields():
    prompt = get_prompt("rationale")
    with pytest.raises(ValueError, match=r"missing \['suffix'\]"):
        prompt.render(prefix="a")
    with pytest.raises(ValueError, match=r"unexpected \['document'\]"):
        prompt.render(prefix="a", suffix="b", document="c")


def test_unknown_prompt_id_lists_valid_ids():
    with pytest.raises(ValueError, match="wiki, qa, easy"):
        get_prompt("wikipedia")


def test_template_file_overrides_wording_keeps_id(tmp_path):
    path = tmp_path / "paper_wiki.txt"
    path.write_text(
        "# my exact prompt\n--- system ---\nBe brief.\n--- user ---\n"
        'Rewrite as JSON {"k": 1} style prose:\n{document}\n',
        encoding="utf-8",
    )
    override = get_prompt("wiki", template_file=str(path))
    assert override.prompt_id == "wiki"
    assert override.system == "Be brief."
    assert override.content_hash != get_prompt("wiki").content_hash
    user = override.render(document="DOC")[-1]["content"]
    assert user == 'Rewrite as JSON {"k": 1} style prose:\nDOC'


def test_markerless_file_is_one_user_message(tmp_path):
    path = tmp_path / "plain.txt"
    path.write_text("Rephrase this: {document}", encoding="utf-8")
    prompt = get_prompt("easy", template_file=str(path))
    assert prompt.system is None
    assert prompt.render(document="x") == ({"role": "user", "content": "Rephrase this: x"},)


def test_template_file_errors(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        get_prompt("wiki", template_file=str(tmp_path / "nope.txt"))
    wrong = tmp_path / "wrong.txt"
    wrong.write_text("--- user ---\nUse {text}", encoding="utf-8")
    with pytest.raises(ValueError, match=r"placeholders \['text'\].*\['document'\]"):
        get_prompt("wiki", template_file=str(wrong))
    no_user = tmp_path / "no_user.txt"
    no_user.write_text("--- system ---\nOnly a system message {document}", encoding="utf-8")
    with pytest.raises(ValueError, match="no user message"):
        get_prompt("wiki", template_file=str(no_user))
    junk = tmp_path / "junk.txt"
    junk.write_text("stray line\n--- user ---\n{document}", encoding="utf-8")
    with pytest.raises(ValueError, match="comment lines"):
        get_prompt("wiki", template_file=str(junk))
