"""Prompt templates: project-written wording stored as data, with a stable id and content hash.

Each built-in prompt is one file ``hf_megadocs/generation/prompts/<prompt_id>.txt``::

    # comment lines (only before the first marker)
    --- system ---
    the system message (this section is optional)
    --- user ---
    the user message, with {document} (or {prefix} and {suffix}) placeholders

Placeholders are ``{name}`` with ``name`` a lowercase identifier; every other brace is kept
literally, so a user-supplied template (for example a paper's exact prompt) needs no
escaping. A template file without markers is one user message, taken verbatim.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property
from importlib import resources
from pathlib import Path

from hf_megadocs.records import stable_hash

PROMPT_IDS: tuple[str, ...] = (
    "wiki",
    "qa",
    "easy",
    "hard",
    "clean",
    "reformat",
    "rationale",
    "textbook",
)
"""The built-in prompt ids; each has a file ``prompts/<id>.txt``."""

SYSTEM_MARKER = "--- system ---"
USER_MARKER = "--- user ---"
CHAT_TEMPLATE_MARGIN_TOKENS = 64
"""Tokens reserved beyond a prompt's text for what chat templates add (role markers, a
default system prompt); request budgets and engine sizing both count with it."""
_PLACEHOLDER = re.compile(r"\{([a-z_][a-z0-9_]*)\}")


@dataclass(frozen=True)
class PromptTemplate:
    """One prompt: its id, optional system message and user message with placeholders."""

    prompt_id: str
    """The prompt's id (one of :data:`PROMPT_IDS`, also for file overrides)."""
    system: str | None
    """The system message, or None for a user-only prompt."""
    user: str
    """The user message with ``{field}`` placeholders."""

    @cached_property
    def content_hash(self) -> str:
        """16 hex digits of sha256 over id, system and user: changes whenever the wording does."""
        return stable_hash({"prompt_id": self.prompt_id, "system": self.system, "user": self.user})

    @cached_property
    def fields(self) -> frozenset[str]:
        """The placeholder names the template expects."""
        text = (self.system or "") + "\n" + self.user
        return frozenset(_PLACEHOLDER.findall(text))

    def render(self, **fields: str) -> tuple[dict[str, str], ...]:
        """The chat messages with every placeholder filled in.

        Raises ``ValueError`` when a placeholder has no value or a value has no placeholder.
        """
        missing = sorted(self.fields - fields.keys())
        extra = sorted(fields.keys() - self.fields)
        if missing or extra:
            raise ValueError(
                f"Prompt {self.prompt_id!r} expects fields {sorted(self.fields)}; "
                f"missing {missing}, unexpected {extra}. Pass exactly the expected fields."
            )

        def fill(text: str) -> str:
            return _PLACEHOLDER.sub(lambda match: fields[match.group(1)], text)

        messages: list[dict[str, str]] = []
        if self.system:
            messages.append({"role": "system", "content": fill(self.system)})
        messages.append({"role": "user", "content": fill(self.user)})
        return tuple(messages)

    def as_record(self) -> dict[str, str | None]:
        """The verbatim template as a JSON-serialisable dict (what the store and card record)."""
        return {
            "prompt_id": self.prompt_id,
            "content_hash": self.content_hash,
            "system": self.system,
            "user": self.user,
        }


def parse_template(prompt_id: str, text: str, origin: str = "<string>") -> PromptTemplate:
    """Parse the template file format described in the module docstring."""
    lines = text.splitlines()
    marker_lines = [
        i for i, line in enumerate(lines) if line.strip() in (SYSTEM_MARKER, USER_MARKER)
    ]
    if not marker_lines:
        if not text.strip():
            raise ValueError(f"Prompt template {origin} is empty; write the user message in it.")
        return PromptTemplate(prompt_id=prompt_id, system=None, user=text)
    head = [line for line in lines[: marker_lines[0]] if line.strip()]
    if any(not line.lstrip().startswith("#") for line in head):
        raise ValueError(
            f"Prompt template {origin}: only '#' comment lines may come before the first "
            f"{SYSTEM_MARKER!r} or {USER_MARKER!r} marker."
        )
    sections: dict[str, str] = {}
    bounds = marker_lines + [len(lines)]
    for start, end in zip(bounds, bounds[1:], strict=False):
        name = "system" if lines[start].strip() == SYSTEM_MARKER else "user"
        if name in sections:
            raise ValueError(f"Prompt template {origin} has two {name!r} sections; keep one.")
        sections[name] = "\n".join(lines[start + 1 : end]).strip("\n")
    if not sections.get("user", "").strip():
        raise ValueError(
            f"Prompt template {origin} has no user message; add a {USER_MARKER!r} section."
        )
    return PromptTemplate(prompt_id=prompt_id, system=sections.get("system"), user=sections["user"])


def get_prompt(prompt_id: str, template_file: str | None = None) -> PromptTemplate:
    """The template for ``prompt_id``; ``template_file`` replaces the built-in wording.

    An override keeps the id (so assembly treats it the same way) but gets its own content
    hash, so its generations never mix with the built-in prompt's in the store. It must use
    the same placeholders as the built-in prompt.
    """
    if prompt_id not in PROMPT_IDS:
        raise ValueError(
            f"Unknown prompt id {prompt_id!r}; valid ids are {', '.join(PROMPT_IDS)}. "
            "To use your own wording, pass one of these ids with template_file=..."
        )
    builtin_text = (
        resources.files("hf_megadocs.generation")
        .joinpath("prompts", f"{prompt_id}.txt")
        .read_text(encoding="utf-8")
    )
    builtin = parse_template(prompt_id, builtin_text, origin=f"prompts/{prompt_id}.txt")
    if template_file is None:
        return builtin
    path = Path(template_file).expanduser()
    if not path.is_file():
        raise ValueError(
            f"prompt_template_file={template_file!r} does not exist or is not a file; "
            "pass the path of a UTF-8 text template."
        )
    override = parse_template(prompt_id, path.read_text(encoding="utf-8"), origin=str(path))
    if override.fields != builtin.fields:
        raise ValueError(
            f"prompt_template_file={template_file!r} uses placeholders {sorted(override.fields)}, "
            f"but prompt {prompt_id!r} fills {sorted(builtin.fields)}; write exactly those "
            "placeholders (as {name}) in the template."
        )
    return override


__all__ = ["PROMPT_IDS", "PromptTemplate", "get_prompt", "parse_template"]
