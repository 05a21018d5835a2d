"""Read enterprise documents (md, txt, html, json, eml) into uniform records with metadata."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import email.utils
import hashlib
import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path

import yaml
from bs4 import BeautifulSoup

SUPPORTED_SUFFIXES = (".md", ".markdown", ".txt", ".html", ".htm", ".json", ".eml")
_TXT_HEADER = re.compile(r"^(Title|Author|Modified|Type):\s*(.*)$", re.IGNORECASE)


class DocumentError(ValueError):
    """A file that cannot become a document; the message is the quarantine reason."""


@dataclass(frozen=True)
class Document:
    """One corpus document: id, enterprise metadata and plain text."""

    doc_id: str
    title: str
    author: str
    path: str
    modified: str
    doc_type: str
    format: str
    text: str
    content_hash: str

    def as_row(self) -> dict[str, str]:
        """The record as a dict (a table row)."""
        return asdict(self)


def _clean(text: str) -> str:
    text = text.replace("\r\n", "\n").replace("\xa0", " ")
    text = re.sub(r"[ \t]+", " ", text)
    return re.sub(r"\n\s*\n\s*(\n\s*)+", "\n\n", text).strip()


def _iso_date(value: object) -> str:
    if isinstance(value, (dt.date, dt.datetime)):
        return value.isoformat()[:10]
    text = str(value or "").strip()
    if re.match(r"^\d{4}-\d{2}-\d{2}", text):
        return text[:10]
    try:
        return email.utils.parsedate_to_datetime(text).date().isoformat()
    except (TypeError, ValueError):
        return ""


def _markdown(raw: str) -> dict[str, object]:
    meta: dict[str, object] = {}
    body = raw
    if raw.startswith("---"):
        parts = raw.split("---", 2)
        if len(parts) == 3:
            try:
                loaded = yaml.safe_load(parts[1])
            except yaml.YAMLError as error:
                raise DocumentError(f"invalid YAML front matter: {error}") from error
            if isinstance(loaded, dict):
                meta, body = loaded, parts[2]
    return {**meta, "body": body}


def _plain_text(raw: str) -> dict[str, object]:
    lines = raw.replace("\r\n", "\n").split("\n")
    meta: dict[str, object] = {}
    index = 0
    while index < len(lines) and (match := _TXT_HEADER.match(lines[index])):
        meta[match.group(1).lower()] = match.group(2).strip()
        index += 1
    return {**meta, "body": "\n".join(lines[index:])}


def _html(raw: str) -> dict[str, object]:
    soup = BeautifulSoup(raw, "html.parser")
    meta: dict[str, object] = {}
    if soup.title and soup.title.string:
        meta["title"] = soup.title.string.strip()
    for tag in soup.find_all("meta"):
        name, content = str(tag.get("name") or "").lower(), tag.get("content")
        if content and name in ("author", "modified", "date", "doc-type", "type"):
            meta["type" if name == "doc-type" else name] = str(content)
    for tag in soup(["script", "style", "nav", "footer", "head", "noscript", "template"]):
        tag.decompose()
    for tag in soup.find_all(True):
        style = str(tag.get("style") or "").replace(" ", "").lower()
        if not tag.decomposed and (tag.has_attr("hidden") or "display:none" in style or "visibility:hidden" in style):
            tag.decompose()
    return {**meta, "body": soup.get_text("\n")}


def _json(raw: str) -> dict[str, object]:
    try:
        loaded = json.loads(raw)
    except json.JSONDecodeError as error:
        raise DocumentError(f"invalid JSON: {error}") from error
    if not isinstance(loaded, dict):
        raise DocumentError("JSON document must be an object with a 'body' (or 'text') field")
    body = loaded.get("body", loaded.get("text", loaded.get("content")))
    if not isinstance(body, str):
        raise DocumentError("JSON document has no string 'body', 'text' or 'content' field")
    return {**loaded, "body": body}


def _eml(raw: str) -> dict[str, object]:
    message = email.message_from_string(raw, policy=email.policy.default)
    part = message.get_body(preferencelist=("plain", "html"))
    if part is None:
        raise DocumentError("e-mail has no text/plain or text/html body")
    body = part.get_content()
    if part.get_content_type() == "text/html":
        body = str(_html(body)["body"])
    sender = email.utils.parseaddr(str(message.get("From", "")))
    return {
        "title": str(message.get("Subject", "")),
        "author": sender[0] or sender[1],
        "modified": str(message.get("Date", "")),
        "type": str(message.get("X-Doc-Type", "email")),
        "body": body,
    }


_READERS = {
    ".md": _markdown,
    ".markdown": _markdown,
    ".txt": _plain_text,
    ".html": _html,
    ".htm": _html,
    ".json": _json,
    ".eml": _eml,
}


def read_document(path: Path, doc_id: str) -> Document:
    """Parse one file; raises ``DocumentError`` with the reason when it cannot be used."""
    suffix = path.suffix.lower()
    reader = _READERS.get(suffix)
    if reader is None:
        raise DocumentError(f"unsupported file type {suffix or '(none)'}; supported: {', '.join(SUPPORTED_SUFFIXES)}")
    data = path.read_bytes()
    try:
        raw = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise DocumentError(f"not UTF-8 text ({error.reason} at byte {error.start})") from error
    fields = reader(raw)
    text = _clean(str(fields.get("body") or ""))
    if not text:
        raise DocumentError("document has no text")
    mtime = dt.datetime.fromtimestamp(path.stat().st_mtime, dt.UTC).date().isoformat()
    return Document(
        doc_id=doc_id,
        title=_clean(str(fields.get("title") or "")) or path.stem.replace("-", " ").replace("_", " "),
        author=str(fields.get("author") or "").strip(),
        path=doc_id,
        modified=_iso_date(fields.get("modified") or fields.get("date")) or mtime,
        doc_type=str(fields.get("type") or fields.get("doc_type") or "unknown").strip().lower(),
        format=suffix.lstrip("."),
        text=text,
        content_hash=hashlib.sha256(data).hexdigest(),
    )


def scan_directory(root: Path, prefix: str = "") -> tuple[list[Document], list[dict[str, str]]]:
    """Every file under ``root``: parsed documents, and quarantine rows ``{doc_id, reason}`` for the rest."""
    documents: list[Document] = []
    quarantined: list[dict[str, str]] = []
    if not root.exists():
        return documents, quarantined
    for path in sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith(".")):
        doc_id = prefix + path.relative_to(root).as_posix()
        try:
            documents.append(read_document(path, doc_id))
        except (DocumentError, OSError) as error:
            quarantined.append({"doc_id": doc_id, "reason": str(error)})
    return documents, quarantined
