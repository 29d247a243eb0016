"""What the card says and leaves out (hf_megadocs.hub.provenance)."""

from __future__ import annotations

from hf_megadocs.hub.provenance import shown_in_card, train_command


def test_the_card_shows_settings_that_change_rows_and_no_local_paths_or_engine_knobs():
    assert shown_in_card("max_docs") and shown_in_card("generator") and shown_in_card("seed")
    for knob in ("store_dir", "cache_dir", "num_proc", "kv_cache_memory_gb", "batch_size"):
        assert not shown_in_card(knob), knob


def test_train_command_is_the_launcher_s_portable_command():
    text = train_command("o/lee", ["stitched_g2", "real"])
    assert "load_dataset('o/lee', 'stitched_g2').save_to_disk('data/stitched_g2')" in text
    assert text.splitlines()[-1] == (
        "accelerate launch -m hf_megadocs.train --config tiny_cpu "
        "--data.synthetic_path data/stitched_g2 --data.real_path data/real "
        "--model.train_tokenizer_vocab 2048"
    )
