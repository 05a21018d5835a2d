"""Read enterprise documents (md, txt, html, json, eml) into uniform records with metadata.

Files come from shares nobody curates, so every step assumes hostile input: at most ``max_bytes`` of a file
are read (the rest is hashed, not kept, and the document is marked truncated), the encoding is detected
(byte-order mark, then UTF-8, then charset-normalizer), binary content is recognised whatever the suffix,
parsers that recurse (JSON, YAML) are stopped before they take the process down, and anything that is not a
readable regular file (symlink loops, broken links, FIFOs, unreadable files, undecodable names) is reported
with its reason. One bad file never stops the others.
"""

from __future__ import annotations

import codecs
import datetime as dt
import email
import email.policy
import email.utils
import errno
import hashlib
import json
import os
import re
import stat
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import charset_normalizer
import yaml
from bs4 import BeautifulSoup, Tag

SUPPORTED_SUFFIXES = (".md", ".markdown", ".txt", ".html", ".htm", ".json", ".eml")
# The cap on what is read of one document (``RELABEL_MAX_DOC_BYTES``): 1 MiB is ~150,000 words, far more than
# any prompt shows (``RELABEL_MAX_DOC_CHARS``) or BM25 needs, and it bounds memory per file.
DEFAULT_MAX_DOC_BYTES = 1 << 20
# Share of control characters (other than tab, newline, carriage return, form feed) above which decoded
# "text" is binary content.
MAX_CONTROL_SHARE = 0.05
_TXT_HEADER = re.compile(r"^(Title|Author|Modified|Type):\s*(.*)$", re.IGNORECASE)
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f]")
_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "PNG image"),
    (b"%PDF-", "PDF document"),
    (b"PK\x03\x04", "ZIP archive or Office file"),
    (b"PK\x05\x06", "ZIP archive"),
    (b"\x7fELF", "ELF executable"),
    (b"GIF87a", "GIF image"),
    (b"GIF89a", "GIF image"),
    (b"\xff\xd8\xff", "JPEG image"),
    (b"\x1f\x8b\x08", "gzip archive"),
    (b"7z\xbc\xaf\x27\x1c", "7-Zip archive"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "legacy Office file"),
)
_WESTERN = ("cp1252", "latin_1", "iso8859_15")
# UTF-32 first: its little-endian mark starts with UTF-16's.
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)


class DocumentError(ValueError):
    """A file that cannot become a document; the message is the quarantine reason."""


@dataclass(frozen=True)
class Document:
    """One corpus document: id, enterprise metadata, plain text, and how it was read."""

    doc_id: str
    title: str
    author: str
    path: str
    modified: str
    doc_type: str
    format: str
    text: str
    content_hash: str
    encoding: str = "utf-8"
    source_bytes: int = 0
    truncated: bool = False

    def as_row(self) -> dict[str, object]:
        """The record as a dict (a table row)."""
        return asdict(self)


# ---------------------------------------------------------------- bytes -> text


def read_capped(path: Path, max_bytes: int = DEFAULT_MAX_DOC_BYTES) -> tuple[bytes, int, str]:
    """The first ``max_bytes`` of a regular file, its full size and the sha256 of all of it (streamed, so a
    50 MB file costs ``max_bytes`` of memory). FIFOs and devices are refused without blocking."""
    descriptor = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    with os.fdopen(descriptor, "rb") as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            raise DocumentError("not a regular file")
        digest = hashlib.sha256()
        head = bytearray()
        size = 0
        while block := handle.read(1 << 20):
            digest.update(block)
            size += len(block)
            if len(head) < max_bytes:
                head += block[: max_bytes - len(head)]
    return bytes(head), size, digest.hexdigest()


def _decode(data: bytes, encoding: str, truncated: bool, errors: str = "strict") -> str:
    # An incremental decoder keeps (drops) a multi-byte character cut by the size cap instead of failing on it.
    return codecs.getincrementaldecoder(encoding)(errors=errors).decode(data, final=not truncated)


def _bomless_utf16(data: bytes) -> str | None:
    """``utf-16-le``/``-be`` when NUL bytes sit only at odd (even) positions, as in UTF-16 text without a
    byte-order mark; ``None`` otherwise (the NULs are binary content)."""
    sample = data[:8192]
    even, odd = sample[0::2], sample[1::2]
    if len(odd) < 2:
        return None
    for nuls, chars, encoding in ((odd, even, "utf-16-le"), (even, odd, "utf-16-be")):
        if nuls.count(0) >= 0.9 * len(nuls) and chars.count(0) <= 0.02 * len(chars):
            return encoding
    return None


def _check_not_binary(text: str) -> None:
    sample = text[:65536]
    controls = len(_CONTROL.findall(sample))
    if sample and controls > MAX_CONTROL_SHARE * len(sample):
        raise DocumentError(f"binary content ({controls / len(sample):.0%} control characters)")


def decode_text(data: bytes, truncated: bool = False) -> tuple[str, str]:
    """``(text, encoding)`` of a file's bytes: a known binary signature or NUL bytes outside UTF-16/32 are
    binary content; a byte-order mark decides the encoding, then strict UTF-8, then charset-normalizer.
    Raises ``DocumentError`` with the reason when the bytes are not text."""
    for magic, what in _MAGIC:
        if data.startswith(magic):
            raise DocumentError(f"binary content ({what}) under a text suffix")
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            try:
                text = _decode(data[len(bom) :], encoding, truncated)
            except UnicodeDecodeError as error:
                raise DocumentError(f"invalid {encoding} after its byte-order mark (at byte {error.start})") from error
            _check_not_binary(text)
            return text, f"{encoding} (BOM)"
    if b"\x00" in data:
        encoding = _bomless_utf16(data)
        if encoding is None:
            raise DocumentError(f"binary content ({data.count(0)} NUL bytes)")
        text = _decode(data, encoding, truncated, errors="replace")
        _check_not_binary(text)
        return text, encoding
    try:
        text = _decode(data, "utf-8", truncated)
    except UnicodeDecodeError:
        pass
    else:
        _check_not_binary(text)
        return text, "utf-8"
    encoding = _detect_legacy_encoding(data)
    text = _decode(data, encoding, truncated, errors="replace")
    _check_not_binary(text)
    return text, encoding


def _detect_legacy_encoding(data: bytes) -> str:
    """charset-normalizer's best guess; among the guesses that fit equally well, Windows-1252 (then
    Latin-1/-9) wins, since short Western European texts fit several code pages and those are what
    enterprise shares hold."""
    matches = list(charset_normalizer.from_bytes(data))
    if not matches:
        raise DocumentError("not text: neither UTF-8 nor any encoding charset-normalizer knows fits the bytes")
    best = matches[0]
    tied = {m.encoding for m in matches if m.chaos <= best.chaos and m.coherence >= best.coherence}
    return next((name for name in _WESTERN if name in tied), best.encoding)


# ---------------------------------------------------------------- text -> fields


def _clean(text: str) -> str:
    text = text.replace("\r\n", "\n").replace("\xa0", " ").replace("\x00", "")
    text = re.sub(r"[ \t]+", " ", text)
    return re.sub(r"\n\s*\n\s*(\n\s*)+", "\n\n", text).strip()


def _safe(text: str) -> str:
    """The string with lone surrogates (from JSON ``\\udXXX`` escapes or undecodable names) replaced, so the
    warehouse can store it."""
    return text.encode("utf-8", "replace").decode("utf-8")


def _scalar(value: object) -> str:
    """A metadata value as text: strings, numbers and dates only (a list or mapping, e.g. a YAML alias bomb,
    is ignored rather than expanded)."""
    if isinstance(value, (str, int, float, dt.date)) and not isinstance(value, bool):
        return _safe(str(value))[:1000]
    return ""


def _iso_date(value: object) -> str:
    if isinstance(value, (dt.date, dt.datetime)):
        return value.isoformat()[:10]
    text = _scalar(value).strip()
    if re.match(r"^\d{4}-\d{2}-\d{2}", text):
        return text[:10]
    try:
        return email.utils.parsedate_to_datetime(text).date().isoformat()
    except (TypeError, ValueError, IndexError, OverflowError):
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


_DROPPED_TAGS = frozenset({"script", "style", "nav", "footer", "head", "noscript", "template"})


def _dropped(tag: Tag) -> bool:
    if tag.name in _DROPPED_TAGS or tag.has_attr("hidden"):
        return True
    style = str(tag.get("style") or "").replace(" ", "").lower()
    return "display:none" in style or "visibility:hidden" in style


def _html(raw: str) -> dict[str, object]:
    soup = BeautifulSoup(raw, "html.parser")
    meta: dict[str, object] = {}
    if soup.title and soup.title.string:
        meta["title"] = soup.title.string.strip()
    for tag in soup.find_all("meta"):
        name, content = str(tag.get("name") or "").lower(), tag.get("content")
        if content and name in ("author", "modified", "date", "doc-type", "type"):
            meta["type" if name == "doc-type" else name] = str(content)
    # Drop scripts, styles, navigation and hidden elements: only the outermost of nested ones is decomposed, and
    # its descendants are skipped in document order, so 10,000 nested elements cost linear time (asking a
    # bs4 Tag whether it is ``decomposed`` searches its whole subtree).
    tags = soup.find_all(True)
    outermost = []
    index = 0
    while index < len(tags):
        if _dropped(tags[index]):
            outermost.append(tags[index])
            index += len(tags[index].find_all(True))
        index += 1
    for tag in outermost:
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
    try:
        body = part.get_content()
    except (LookupError, ValueError) as error:
        raise DocumentError(f"e-mail body cannot be decoded: {error}") from error
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


def _parse(reader: Callable[[str], dict[str, object]], raw: str, suffix: str) -> dict[str, object]:
    """Run a format reader; whatever it raises on hostile input becomes a quarantine reason."""
    try:
        return reader(raw)
    except DocumentError:
        raise
    except RecursionError as error:
        raise DocumentError(f"{suffix.lstrip('.')} structure is nested too deeply to parse") from error
    except Exception as error:  # a parser bug on hostile input must not stop the batch
        raise DocumentError(f"cannot parse {suffix.lstrip('.')}: {type(error).__name__}: {error}") from error


def read_document(path: Path, doc_id: str, max_bytes: int = DEFAULT_MAX_DOC_BYTES) -> Document:
    """Parse one file, reading at most ``max_bytes`` of it; raises ``DocumentError`` with the reason when it
    cannot be used (and ``OSError`` when it cannot be opened)."""
    suffix = path.suffix.lower()
    reader = _READERS.get(suffix)
    if reader is None:
        raise DocumentError(f"unsupported file type {suffix or '(none)'}; supported: {', '.join(SUPPORTED_SUFFIXES)}")
    data, size, content_hash = read_capped(path, max_bytes)
    truncated = size > len(data)
    raw, encoding = decode_text(data, truncated)
    fields = _parse(reader, raw, suffix)
    text = _safe(_clean(str(fields.get("body") or "")))
    if not text:
        raise DocumentError("document has no text")
    mtime = dt.datetime.fromtimestamp(path.stat().st_mtime, dt.UTC).date().isoformat()
    return Document(
        doc_id=doc_id,
        title=_clean(_scalar(fields.get("title"))) or _safe(path.stem.replace("-", " ").replace("_", " ")),
        author=_scalar(fields.get("author")).strip(),
        path=doc_id,
        modified=_iso_date(fields.get("modified") or fields.get("date")) or mtime,
        doc_type=(_scalar(fields.get("type") or fields.get("doc_type")).strip().lower() or "unknown")[:100],
        format=suffix.lstrip("."),
        text=text,
        content_hash=content_hash,
        encoding=encoding,
        source_bytes=size,
        truncated=truncated,
    )


# ---------------------------------------------------------------- folders


@dataclass(frozen=True)
class SourceFile:
    """One entry of a document folder: its path, its doc id (relative POSIX path, printable), and ``problem``,
    the reason it cannot be read ("" for a regular file or a symlink to one inside the folder)."""

    path: Path
    doc_id: str
    problem: str = ""


def _link_problem(path: Path, real_root: str) -> str:
    try:
        target = os.stat(path)
    except OSError as error:
        if error.errno == errno.ELOOP:
            return "symlink loop"
        if error.errno == errno.ENOENT:
            return "broken symlink (its target does not exist)"
        return f"symlink cannot be followed: {error.strerror}"
    real = os.path.realpath(path)
    if os.path.commonpath([real, real_root]) != real_root:
        return "symlink points outside the folder (not followed)"
    if stat.S_ISDIR(target.st_mode):
        return "symlink to a folder (not followed)"
    return "" if stat.S_ISREG(target.st_mode) else "symlink to something that is not a regular file"


def iter_source_files(root: Path) -> Iterator[SourceFile]:
    """Every non-hidden entry under ``root`` that could be a document, sorted by doc id, without following
    symlinked folders (so loops cannot recurse); unreadable folders, symlink loops, broken or outside links,
    FIFOs and names that are not valid UTF-8 come with their ``problem``."""
    if not root.exists():
        return
    real_root = os.path.realpath(root)
    entries: list[SourceFile] = []
    walk_errors: list[OSError] = []
    for folder, dirnames, filenames in os.walk(root, onerror=walk_errors.append, followlinks=False):
        linked_dirs = [d for d in dirnames if os.path.islink(os.path.join(folder, d))]
        for name in [*filenames, *linked_dirs]:
            if name.startswith("."):
                continue
            path = Path(folder) / name
            doc_id = path.relative_to(root).as_posix()
            try:
                doc_id.encode("utf-8")
            except UnicodeEncodeError:
                shown = doc_id.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
                entries.append(SourceFile(path, shown, "file name is not valid UTF-8"))
                continue
            if path.is_symlink():
                problem = _link_problem(path, real_root)
            else:
                try:
                    mode = path.lstat().st_mode
                    problem = "" if stat.S_ISREG(mode) else "not a regular file (FIFO, socket or device)"
                except OSError as error:
                    problem = f"cannot stat: {error.strerror}"
            entries.append(SourceFile(path, doc_id, problem))
    for error in walk_errors:
        path = Path(error.filename or root)
        doc_id = _safe(path.relative_to(root).as_posix() + "/") if path != root else "./"
        entries.append(SourceFile(path, doc_id, f"cannot list folder: {error.strerror}"))
    yield from sorted(entries, key=lambda e: e.doc_id)


def scan_directory(
    root: Path, prefix: str = "", max_bytes: int = DEFAULT_MAX_DOC_BYTES
) -> tuple[list[Document], list[dict[str, str]]]:
    """Every file under ``root``: parsed documents, and quarantine rows ``{doc_id, reason}`` for the rest."""
    documents: list[Document] = []
    quarantined: list[dict[str, str]] = []
    for entry in iter_source_files(root):
        doc_id = prefix + entry.doc_id
        if entry.problem:
            quarantined.append({"doc_id": doc_id, "reason": entry.problem})
            continue
        try:
            documents.append(read_document(entry.path, doc_id, max_bytes))
        except (DocumentError, OSError) as error:
            reason = str(error) if isinstance(error, DocumentError) else f"cannot read: {error.strerror or error}"
            quarantined.append({"doc_id": doc_id, "reason": reason})
    return documents, quarantined
