"""Clean one raw backend output into a stored :class:`~hf_megadocs.records.Generation`.

Instruction-tuned generators wrap their answer in chatter ("Sure! Here is the rewritten
text:"), fences or quotes, and sometimes refuse. Cleaning strips the wrappers and flags the
rest; it never rewrites the content itself. Flags:

- ``empty``: nothing left after cleaning;
- ``truncated``: the generator hit ``max_new_tokens`` (finish_reason "length");
- ``refusal``: the output declines the task;
- ``preamble_stripped`` / ``postamble_stripped``: a leading / trailing chatter line was removed;
- ``unwrapped``: a code fence or quotes around the whole output were removed;
- ``error``: the backend failed; the caller must not store it (it is retried next run).
"""

from __future__ import annotations

import re

from hf_megadocs.adapters import adapter_hash
from hf_megadocs.records import Generation, GenerationRequest, RawOutput

PREAMBLE_PATTERNS: tuple[re.Pattern[str], ...] = (
    # "Sure!", "Certainly.", "Of course! Here's the article:"
    re.compile(
        r"^(?:sure|certainly|of course|absolutely|okay|ok|great|alright)[!.,:][^\n]{0,160}$",
        re.IGNORECASE,
    ),
    # "Here is the rephrased text:", "Here's a simpler version of the document."
    re.compile(
        r"^here(?:'s| is| are)\b[^\n]{0,200}(?::|\b(?:rewrit\w*|rephras\w*|version|article|text|"
        r"document|passage|entries|questions|summary|section)\b[^\n]{0,40}[.!]?)\s*$",
        re.IGNORECASE,
    ),
    # "Below is ...:", "The following is ...:"
    re.compile(r"^(?:below is|below are|the following)\b[^\n]{0,200}:\s*$", re.IGNORECASE),
    # a short lead-in naming the output: "For a completed and edited document:"
    re.compile(
        r"^[^\n]{0,80}\b(?:document|text|version|article|passage|rewrite|rephrasing|edit)\b"
        r"[^\n]{0,40}:\s*$",
        re.IGNORECASE,
    ),
    # a bare label line: "Rewritten text:", "**Rephrased version:**", "Article:"
    re.compile(
        r"^[*#_ ]*(?:rewritten|rephrased|revised|simplified|cleaned|new|reformatted)?\s*"
        r"(?:text|version|article|document|passage|answer|output)\s*:[*_ ]*$",
        re.IGNORECASE,
    ),
)
"""A first line matching one of these is chatter, not content (applied up to twice)."""

POSTAMBLE_PATTERNS: tuple[re.Pattern[str], ...] = (
    re.compile(r"^(?:i hope (?:this|that) helps|hope (?:this|that) helps)\b[^\n]{0,200}$", re.I),
    re.compile(r"^(?:let me know if|feel free to (?:ask|let me know))\b[^\n]{0,200}$", re.I),
)
"""A last line matching one of these is chatter, not content."""

REFUSAL_PATTERNS: tuple[re.Pattern[str], ...] = (
    re.compile(
        r"^(?:i'?m sorry|i am sorry|sorry|unfortunately)\b[^\n]{0,80}?\b"
        r"(?:can'?t|cannot|can not|unable|won'?t|not able)\b",
        re.IGNORECASE,
    ),
    re.compile(
        r"^i (?:can'?t|cannot|can not|won'?t|am unable to|'m unable to|am not able to)\s+"
        r"(?:help|assist|comply|provide|do|fulfil+|complete|rephrase|rewrite|create|write)\b",
        re.IGNORECASE,
    ),
    re.compile(r"^as an ai\b", re.IGNORECASE),
)
"""An output starting like one of these declines the task."""

_FENCE = re.compile(r"^```[\w+-]*[ \t]*\n(.*?)\n?```$", re.DOTALL)
_QUOTES = (('"', '"'), ("\u201c", "\u201d"), ("'", "'"))


_TAG_LINE = re.compile(r"^\s*</?(?:document|article|text|prefix|suffix)>\s*$", re.IGNORECASE)
"""A line holding only a prompt delimiter tag that the generator echoed."""


def _unwrap(text: str) -> str:
    lines = text.split("\n")
    if len(lines) > 2 and _TAG_LINE.match(lines[0]) and _TAG_LINE.match(lines[-1]):
        return "\n".join(lines[1:-1]).strip()
    fence = _FENCE.match(text)
    if fence and "```" not in fence.group(1):
        return fence.group(1).strip()
    for open_, close in _QUOTES:
        inner = text[len(open_) : -len(close)]
        if len(text) >= 2 and text.startswith(open_) and text.endswith(close):
            if open_ not in inner and close not in inner:
                return inner.strip()
    return text


def clean_text(raw_text: str) -> tuple[str, tuple[str, ...]]:
    """The cleaned text and the cleaning flags (without the finish-reason flags)."""
    flags: list[str] = []
    text = raw_text.strip()
    for _ in range(2):
        first, _, rest = text.partition("\n")
        if rest.strip() and any(p.match(first.strip()) for p in PREAMBLE_PATTERNS):
            text = rest.strip()
            if "preamble_stripped" not in flags:
                flags.append("preamble_stripped")
    head, _, last = text.rpartition("\n")
    if head.strip() and any(p.match(last.strip()) for p in POSTAMBLE_PATTERNS):
        text = head.strip()
        flags.append("postamble_stripped")
    unwrapped = _unwrap(text)
    if unwrapped != text:
        text = unwrapped
        flags.append("unwrapped")
    if not text:
        flags.append("empty")
    elif any(p.match(text[:300]) for p in REFUSAL_PATTERNS):
        flags.append("refusal")
    return text, tuple(flags)


def clean_output(raw: RawOutput, request: GenerationRequest, backend_name: str) -> Generation:
    """The stored form of ``raw``: cleaned text, flags and the request's key fields."""
    if raw.finish_reason == "error":
        text, flags = "", ("error",)
    else:
        text, flags = clean_text(raw.text)
        if raw.finish_reason == "length":
            flags = flags + ("truncated",)
    return Generation(
        key=request.key,
        source_id=request.source_id,
        prompt_id=request.prompt_id,
        prompt_hash=request.prompt_hash,
        generator=request.generator,
        generator_revision=request.generator_revision,
        sampling=request.sampling.key(),
        sample_index=request.sample_index,
        input_part=request.input_part,
        text=text,
        raw_text=raw.text,
        prompt_tokens=raw.prompt_tokens,
        completion_tokens=raw.completion_tokens,
        finish_reason=raw.finish_reason,
        flags=flags,
        backend=backend_name,
        lora=request.lora,
        lora_hash=adapter_hash(request.lora) if request.lora else None,
    )


__all__ = [
    "POSTAMBLE_PATTERNS",
    "PREAMBLE_PATTERNS",
    "REFUSAL_PATTERNS",
    "clean_output",
    "clean_text",
]
