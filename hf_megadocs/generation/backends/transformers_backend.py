"""The transformers backend: batched ``model.generate`` with per-sample seeded sampling.

``generate`` has no per-row seed: with ``do_sample=True`` every row draws from the one
global RNG, so a sample would depend on its batch neighbours. This backend instead runs
``generate`` greedily behind :class:`SeededSampler`, a logits processor that samples each
row itself (temperature, top-p) from that row's own ``torch.Generator`` seeded with
``request.sample_seed`` and leaves only the drawn token selectable. Sample ``i`` then
depends on its seed and prompt, not on G or on which requests share its batch, up to
floating-point differences between batch shapes (left padding changes reduction
order; in fp32 these rarely flip a token, in bf16 more often).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

from hf_megadocs.generation.embedded import resolve_generator
from hf_megadocs.generation.failures import failed_output
from hf_megadocs.records import GenerationRequest, RawOutput

if TYPE_CHECKING:
    import torch

    from hf_megadocs.generation.backends import BackendConfig

logger = logging.getLogger(__name__)


def pick_dtype(name: str, device: str) -> torch.dtype:
    """``"auto"`` → bfloat16 where the device runs it (CPU, recent GPUs), else float32."""
    import torch

    if name != "auto":
        dtype = getattr(torch, name, None)
        if not isinstance(dtype, torch.dtype):
            raise ValueError(
                f"BackendConfig.dtype={name!r} is not a torch dtype; use 'auto', 'bfloat16', "
                "'float16' or 'float32'."
            )
        return dtype
    if device.startswith("cuda"):
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32
    try:  # bf16 matmuls work on any recent CPU build, but check rather than assume
        torch.ones(2, 2, dtype=torch.bfloat16, device=device) @ torch.ones(
            2, 2, dtype=torch.bfloat16, device=device
        )
        return torch.bfloat16
    except RuntimeError:
        return torch.float32


class SeededSampler:
    """A logits processor that samples every row with its own generator and settings.

    It returns scores that are ``-inf`` except at the drawn token, so greedy decoding
    emits exactly the drawn token. Rows with temperature 0 take the argmax.
    """

    def __init__(
        self,
        seeds: Sequence[int],
        temperatures: Sequence[float],
        top_ps: Sequence[float],
        device: str,
    ) -> None:
        import torch

        self.generators = [torch.Generator(device=device).manual_seed(seed) for seed in seeds]
        self.temperatures = torch.tensor(temperatures, dtype=torch.float32, device=device)
        self.top_ps = torch.tensor(top_ps, dtype=torch.float32, device=device)
        self.needs_top_p = bool((self.top_ps < 1).any())  # the vocabulary sort is costly

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        import torch

        logits = scores.float()
        greedy = self.temperatures == 0
        probs = torch.softmax(logits / torch.where(greedy, 1.0, self.temperatures)[:, None], dim=-1)
        if self.needs_top_p:
            # Per row: keep the smallest prefix of the sorted distribution reaching top_p.
            sorted_probs, order = probs.sort(dim=-1, descending=True)
            drop_sorted = (sorted_probs.cumsum(dim=-1) - sorted_probs) >= self.top_ps[:, None]
            probs = probs.scatter(-1, order, sorted_probs.masked_fill(drop_sorted, 0.0))
        tokens = torch.empty(len(self.generators), dtype=torch.long, device=scores.device)
        for row, generator in enumerate(self.generators):
            if greedy[row]:
                tokens[row] = logits[row].argmax()
            else:
                tokens[row] = torch.multinomial(probs[row], 1, generator=generator)[0]
        chosen = torch.full_like(scores, float("-inf"))
        return chosen.scatter(-1, tokens[:, None], 0.0)


class TransformersBackend:
    """In-process generation with ``transformers`` (no vLLM needed; slower).

    Requests are grouped by ``max_new_tokens``, sorted by prompt length (less padding)
    and generated ``config.transformers_batch_size`` at a time with left padding and the model's chat
    template. Each sample is drawn with its own seed (see :class:`SeededSampler`), so
    outputs are reproducible per request, independent of batch composition up to
    floating-point batch-shape effects (exactly so in practice only in fp32).
    """

    name = "transformers"

    def __init__(self, config: BackendConfig) -> None:
        try:
            import torch
            from transformers import AutoModelForCausalLM, AutoTokenizer
        except ImportError as error:
            raise ImportError(
                f"The transformers backend needs torch and transformers ({error}). "
                "pip install transformers torch"
            ) from error
        self.config = config
        path, self.generator, self.generator_revision = resolve_generator(
            config.generator, config.revision, to_load=True
        )
        self.device = config.device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.dtype = pick_dtype(config.dtype, self.device)
        revision = config.revision if path == config.generator else None
        self.tokenizer = AutoTokenizer.from_pretrained(path, revision=revision)
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        if not self.tokenizer.chat_template:
            raise ValueError(
                f"Generator {self.generator!r} has no chat template; use an instruct model."
            )
        model = AutoModelForCausalLM.from_pretrained(path, revision=revision, dtype=self.dtype)
        if config.lora_path:
            try:
                from peft import PeftModel
            except ImportError as error:
                raise ImportError(
                    f"BackendConfig.lora_path needs peft ({error}). pip install 'peft>=0.21,<0.22'"
                ) from error
            model = PeftModel.from_pretrained(model, config.lora_path).merge_and_unload()
        self.model = model.to(self.device).eval()
        eos = self.model.generation_config.eos_token_id
        self._eos_ids = {eos} if isinstance(eos, int) else set(eos or [self.tokenizer.eos_token_id])
        logger.info("transformers backend: %s on %s in %s", self.generator, self.device, self.dtype)

    @property
    def max_context_tokens(self) -> int:
        own = int(getattr(self.model.config, "max_position_embeddings", 0) or 0)
        limits = [n for n in (own, self.config.max_model_len) if n]
        return min(limits) if limits else 2048

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer.encode(text, add_special_tokens=False))

    def _prompt_ids(self, request: GenerationRequest) -> list[int]:
        encoded = self.tokenizer.apply_chat_template(
            [dict(m) for m in request.messages],
            add_generation_prompt=True,
            tokenize=True,
            return_dict=True,
        )
        return list(encoded["input_ids"])

    def generate(self, requests: Sequence[GenerationRequest]) -> list[RawOutput]:
        """One sample per request, in order; over-long prompts come back as "error"."""
        from tqdm.auto import tqdm

        outputs: list[RawOutput | None] = [None] * len(requests)
        prompts: dict[int, list[int]] = {}
        for index, request in enumerate(requests):
            if request.lora not in (None, self.config.lora_path):
                outputs[index] = _error(
                    f"LoRA {request.lora!r} is not loaded; the transformers backend serves "
                    f"only BackendConfig.lora_path={self.config.lora_path!r}."
                )
                continue
            ids = self._prompt_ids(request)
            budget = len(ids) + request.sampling.max_new_tokens
            if budget > self.max_context_tokens:  # fails the same way on every run
                outputs[index] = failed_output(
                    f"prompt of {len(ids)} tokens + max_new_tokens="
                    f"{request.sampling.max_new_tokens} exceeds the context of "
                    f"{self.max_context_tokens} tokens.",
                    permanent=True,
                )
                continue
            prompts[index] = ids
        # Same max_new_tokens per batch; similar lengths together to waste less on padding.
        order = sorted(
            prompts, key=lambda i: (requests[i].sampling.max_new_tokens, len(prompts[i]))
        )
        batches: list[list[int]] = []
        for index in order:
            limit = requests[index].sampling.max_new_tokens
            if (
                batches
                and len(batches[-1]) < self.config.transformers_batch_size
                and requests[batches[-1][0]].sampling.max_new_tokens == limit
            ):
                batches[-1].append(index)
            else:
                batches.append([index])
        with tqdm(
            total=len(order),
            unit="sample",
            desc="transformers generate",
            disable=len(batches) < 2,
            leave=False,
        ) as progress:
            for batch in batches:
                for index, output in zip(
                    batch,
                    self._generate_batch([requests[i] for i in batch], [prompts[i] for i in batch]),
                ):
                    outputs[index] = output
                progress.update(len(batch))
        return [output for output in outputs if output is not None]

    def _generate_batch(
        self, requests: list[GenerationRequest], prompts: list[list[int]]
    ) -> list[RawOutput]:
        import torch
        from transformers import GenerationConfig, LogitsProcessorList

        width = max(len(ids) for ids in prompts)
        pad = self.tokenizer.pad_token_id
        input_ids = torch.tensor(
            [[pad] * (width - len(ids)) + ids for ids in prompts], device=self.device
        )
        attention_mask = torch.tensor(
            [[0] * (width - len(ids)) + [1] * len(ids) for ids in prompts], device=self.device
        )
        max_new_tokens = requests[0].sampling.max_new_tokens
        sampler = SeededSampler(
            [r.sample_seed for r in requests],
            [r.sampling.temperature for r in requests],
            [r.sampling.top_p for r in requests],
            device=self.device,
        )
        generation_config = GenerationConfig(
            max_new_tokens=max_new_tokens,
            do_sample=False,
            eos_token_id=sorted(self._eos_ids),
            pad_token_id=pad,
        )
        with torch.inference_mode():
            sequences = self.model.generate(
                input_ids=input_ids,
                attention_mask=attention_mask,
                generation_config=generation_config,
                logits_processor=LogitsProcessorList([sampler]),
            )
        outputs = []
        for row, ids in enumerate(prompts):
            new = sequences[row, width:].tolist()
            end = next((k for k, token in enumerate(new) if token in self._eos_ids), None)
            kept = new if end is None else new[:end]
            outputs.append(
                RawOutput(
                    text=self.tokenizer.decode(kept, skip_special_tokens=True),
                    prompt_tokens=len(ids),
                    completion_tokens=len(new)
                    if end is None
                    else end + 1,  # EOS counts, as in vLLM
                    finish_reason="length" if end is None else "stop",
                )
            )
        return outputs

    def close(self) -> None:
        """Drop the model (frees its memory once no other reference holds it)."""
        self.model = None


def _error(message: str) -> RawOutput:
    return RawOutput(text=message, prompt_tokens=0, completion_tokens=0, finish_reason="error")
