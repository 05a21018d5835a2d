"""Prompt templates shipped as files in ``relabel/llm/prompt_files``: id = file stem, version = content hash."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cache
from importlib import resources
from string import Template
from typing import Any


@dataclass(frozen=True)
class PromptTemplate:
    """A chat prompt with ``$placeholders``; ``version`` changes whenever the file changes."""

    prompt_id: str
    version: str
    system: str
    user: str

    def render(self, **values: object) -> list[dict[str, str]]:
        """Chat messages with every placeholder filled; a missing value raises ``KeyError``."""
        text = {key: str(value) for key, value in values.items()}
        return [
            {"role": "system", "content": Template(self.system).substitute(text)},
            {"role": "user", "content": Template(self.user).substitute(text)},
        ]


def parse_template(prompt_id: str, source: str) -> PromptTemplate:
    """Split a ``### system`` / ``### user`` file into a template."""
    sections: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in source.splitlines():
        header = line.strip().lower()
        if header in ("### system", "### user"):
            current = sections.setdefault(header[4:], [])
        elif current is not None:
            current.append(line)
    if set(sections) != {"system", "user"}:
        raise ValueError(f"prompt {prompt_id!r} needs exactly a '### system' and a '### user' section")
    version = hashlib.sha256(source.encode()).hexdigest()[:12]
    return PromptTemplate(
        prompt_id, version, "\n".join(sections["system"]).strip(), "\n".join(sections["user"]).strip()
    )


def prompt_ids() -> list[str]:
    """Ids of the prompt files shipped in ``relabel/llm/prompt_files``."""
    return sorted(
        entry.name.removesuffix(".txt")
        for entry in resources.files("relabel.llm.prompt_files").iterdir()
        if entry.name.endswith(".txt")
    )


@cache
def load_prompt(prompt_id: str) -> PromptTemplate:
    """Load ``relabel/llm/prompt_files/<prompt_id>.txt``; an unknown id raises ``ValueError`` naming the known ones."""
    if prompt_id not in prompt_ids():
        raise ValueError(f"unknown prompt {prompt_id!r}: use one of {', '.join(prompt_ids())}")
    source = resources.files("relabel.llm.prompt_files").joinpath(f"{prompt_id}.txt").read_text(encoding="utf-8")
    return parse_template(prompt_id, source)


# document characters an LLM prompt shows (query writing and grading): the one default of RELABEL_MAX_DOC_CHARS
MAX_DOC_CHARS = 500


def render_pair(
    prompt: PromptTemplate, query: str, doc: dict[str, Any], max_doc_chars: int, **extra: object
) -> list[dict[str, str]]:
    """Grading messages: fixed instructions, then the fenced document with its metadata, then the query (the
    layout is the template's; ``grade_nist`` puts the document first so a document's pairs share a cached prefix)."""
    text = str(doc["text"])
    if len(text) > max_doc_chars:
        text = text[:max_doc_chars].rsplit(" ", 1)[0] + " ..."
    text = text.replace("</document>", "</ document>")
    return prompt.render(
        query=query,
        title=doc.get("title", ""),
        author=doc.get("author", ""),
        path=doc.get("path", ""),
        modified=doc.get("modified", ""),
        doc_type=doc.get("doc_type", ""),
        text=text,
        **extra,
    )
