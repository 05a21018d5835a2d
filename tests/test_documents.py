"""Document parsing: metadata from every format, quarantine reasons for bad files, and hostile input (deep
nesting, binaries under text suffixes, huge files, legacy encodings, symlink loops, odd names)."""

import hashlib
import os
import time
from pathlib import Path

import pytest

from relabel.corpus import documents
from relabel.corpus.documents import DocumentError, read_document, scan_directory
from relabel.evaluation.judgments import demo_corpus_dir

pytestmark = pytest.mark.unit


def test_tiny_corpus_metadata_from_each_format(tiny_corpus: Path) -> None:
    docs, quarantined = scan_directory(tiny_corpus)
    by_id = {d.doc_id: d for d in docs}
    assert quarantined == []
    assert by_id["it/vpn-windows.md"].title == "VPN setup on Windows"
    assert by_id["it/vpn-windows.md"].modified == "2025-03-14"
    assert by_id["it/vpn-mac.txt"].author == "Dana Ops"
    assert by_id["it/vpn-mac.txt"].text.startswith("If the VPN drops")
    html = by_id["hr/leave.html"]
    assert (html.title, html.author, html.doc_type) == ("Parental leave policy", "Aisha HR", "policy")
    assert "track()" not in html.text and "26 weeks" in html.text
    assert by_id["finance/expenses.json"].doc_type == "policy"


def test_eml_headers_become_metadata(tmp_path: Path) -> None:
    path = tmp_path / "notice.eml"
    path.write_text(
        "From: Mei Chen <mei@kestrel.example>\nTo: all@kestrel.example\n"
        "Date: Thu, 15 May 2025 09:12:00 +0100\nSubject: Patch your laptop\nX-Doc-Type: email\n"
        "Content-Type: text/plain; charset=utf-8\n\nInstall the May security update today.\n"
    )
    doc = read_document(path, "notice.eml")
    assert (doc.title, doc.author, doc.modified, doc.doc_type) == (
        "Patch your laptop",
        "Mei Chen",
        "2025-05-15",
        "email",
    )


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        ("empty.md", b"---\ntitle: x\n---\n   \n", "no text"),
        ("binary.txt", b"\x00\x01\x02bad\xff", "binary content"),
        ("broken.json", b"{not json", "invalid JSON"),
        ("list.json", b"[1, 2]", "must be an object"),
        ("sheet.xlsx", b"PK", "unsupported file type"),
    ],
)
def test_bad_files_are_quarantined_with_reason(tmp_path: Path, name: str, content: bytes, reason: str) -> None:
    (tmp_path / name).write_bytes(content)
    (tmp_path / "good.txt").write_text("Title: Fine\n\nA perfectly good document.")
    docs, quarantined = scan_directory(tmp_path)
    assert [d.doc_id for d in docs] == ["good.txt"]
    assert len(quarantined) == 1 and quarantined[0]["doc_id"] == name
    assert reason in quarantined[0]["reason"]
    with pytest.raises(DocumentError):
        read_document(tmp_path / name, name)


def test_demo_corpus_is_complete() -> None:
    docs, quarantined = scan_directory(demo_corpus_dir())
    assert quarantined == []
    assert len(docs) >= 60
    assert {d.format for d in docs} >= {"md", "txt", "html", "json", "eml"}
    assert all(d.title and d.author and d.modified and d.doc_type != "unknown" for d in docs)


def _scan_one(tmp_path: Path, name: str, content: bytes, **kwargs: int) -> tuple[list, list]:
    (tmp_path / name).write_bytes(content)
    return scan_directory(tmp_path, **kwargs)


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("deep.json", b"[" * 50_000 + b"]" * 50_000),
        ("deep-field.json", b'{"body": "x", "meta": ' + b"[" * 50_000 + b"]" * 50_000 + b"}"),
        ("deep-front-matter.md", b"---\ntitle: " + b"[" * 20_000 + b"]" * 20_000 + b"\n---\nbody\n"),
    ],
)
def test_deep_nesting_is_quarantined_not_raised(tmp_path: Path, name: str, content: bytes) -> None:
    (tmp_path / "good.txt").write_text("A perfectly good document.")
    docs, quarantined = _scan_one(tmp_path, name, content)
    assert [d.doc_id for d in docs] == ["good.txt"]
    assert quarantined == [{"doc_id": name, "reason": quarantined[0]["reason"]}]
    assert "nested too deeply" in quarantined[0]["reason"]


def test_html_nested_ten_thousand_levels_is_read_in_linear_time(tmp_path: Path) -> None:
    hidden = '<div hidden="">' * 5_000 + "secret" + "</div>" * 5_000
    page = "<html><body>" + "<div>" * 10_000 + "deep answer" + hidden + "</div>" * 10_000 + "</body></html>"
    started = time.perf_counter()
    docs, quarantined = _scan_one(tmp_path, "deep.html", page.encode())
    assert time.perf_counter() - started < 20  # quadratic bs4 lookups took ~50 s here
    assert quarantined == [] and docs[0].text == "deep answer"


@pytest.mark.parametrize(
    ("name", "content", "what"),
    [
        ("zeros.txt", b"\x00" * 2000, "NUL bytes"),
        ("image.md", b"\x89PNG\r\n\x1a\n" + bytes(200), "PNG"),
        ("report.html", b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj", "PDF"),
        ("archive.json", b"PK\x03\x04" + bytes(range(256)), "ZIP"),
        ("tool.eml", b"\x7fELF\x02\x01\x01" + bytes(100), "ELF"),
        ("noise.txt", bytes(range(1, 32)) * 50, "control characters"),
    ],
)
def test_binary_content_is_quarantined_whatever_the_suffix(
    tmp_path: Path, name: str, content: bytes, what: str
) -> None:
    docs, quarantined = _scan_one(tmp_path, name, content)
    assert docs == []
    assert "binary content" in quarantined[0]["reason"] and what in quarantined[0]["reason"]


def test_text_is_capped_and_truncation_recorded(tmp_path: Path) -> None:
    body = ("Zoë’s résumé " * 100 + "\n").encode()  # multi-byte characters straddle the cut
    content = b"Title: Big\n\n" + body * 50
    docs, quarantined = _scan_one(tmp_path, "big.txt", content, max_bytes=10_001)
    assert quarantined == []
    doc = docs[0]
    assert doc.truncated and doc.source_bytes == len(content)
    assert len(doc.text.encode()) <= 10_001 and doc.text.startswith("Zoë’s résumé")
    assert doc.content_hash == hashlib.sha256(content).hexdigest()  # the whole file, as the inbox sensor hashes it
    small = read_document(tmp_path / "big.txt", "big.txt", max_bytes=len(content))
    assert not small.truncated and len(small.text) > len(doc.text)


@pytest.mark.parametrize(
    ("content", "encoding"),
    [
        ("Title: Räder\n\nÜber die Fahrräder in Köln.".encode("utf-16"), "utf-16-le (BOM)"),
        ("Title: Räder\n\nÜber die Fahrräder in Köln.".encode("utf-16-be"), "utf-16-be"),
        ("\ufeffTitle: Räder\n\nÜber die Fahrräder in Köln.".encode(), "utf-8 (BOM)"),
        ("Title: Räder\n\nÜber die Fahrräder in Köln, naïve façade.".encode("latin-1"), "cp1252"),
    ],
)
def test_encodings_are_detected(tmp_path: Path, content: bytes, encoding: str) -> None:
    docs, quarantined = _scan_one(tmp_path, "de.txt", content)
    assert quarantined == []
    assert (docs[0].title, docs[0].encoding) == ("Räder", encoding)
    assert docs[0].text.startswith("Über die Fahrräder in Köln")


def test_hostile_json_values_become_storable_text(tmp_path: Path) -> None:
    content = b'{"body": "bad \\udcff surrogate\\u0000", "title": ["not", "a", "string"], "modified": 12}'
    docs, quarantined = _scan_one(tmp_path, "odd.json", content)
    assert quarantined == []
    doc = docs[0]
    assert doc.text == "bad ? surrogate" and doc.title == "odd"
    doc.text.encode("utf-8")  # no lone surrogate left for the warehouse to choke on


def test_yaml_alias_bomb_in_front_matter_is_not_expanded(tmp_path: Path) -> None:
    lines = ["a: &a [x, x, x, x, x, x, x, x, x]"]
    for prev, name in zip("abcdefgh", "bcdefghi", strict=True):
        lines.append(f"{name}: &{name} [" + ", ".join([f"*{prev}"] * 9) + "]")
    content = "---\n" + "\n".join(lines) + "\ntitle: *i\n---\nThe body.\n"
    started = time.perf_counter()
    docs, quarantined = _scan_one(tmp_path, "bomb.md", content.encode())
    assert time.perf_counter() - started < 10
    assert quarantined == [] and (docs[0].title, docs[0].text) == ("bomb", "The body.")


def test_a_parser_crash_becomes_a_quarantine_reason(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def explode(raw: str) -> dict[str, object]:
        raise KeyError("surprise")

    monkeypatch.setitem(documents._READERS, ".txt", explode)
    (tmp_path / "good.md").write_text("fine")
    docs, quarantined = _scan_one(tmp_path, "bad.txt", b"hello")
    assert [d.doc_id for d in docs] == ["good.md"]
    assert quarantined == [{"doc_id": "bad.txt", "reason": "cannot parse txt: KeyError: 'surprise'"}]


def test_links_fifos_odd_names_and_unreadable_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "share"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "real.txt").write_text("the real document")
    os.symlink("loop-b.txt", root / "loop-a.txt")
    os.symlink("loop-a.txt", root / "loop-b.txt")
    os.symlink("missing.txt", root / "dangling.txt")
    os.symlink(tmp_path / "outside.txt", root / "outside.txt")
    (tmp_path / "outside.txt").write_text("not part of the share")
    os.symlink("sub/real.txt", root / "alias.txt")
    os.symlink("..", root / "sub" / "up")  # a folder loop: never followed
    os.mkfifo(root / "pipe.txt")
    (root / "with space\nand newline é.txt").write_text("odd name, fine text")
    (root / os.fsdecode(b"latin1-\xe9.txt")).write_text("name is not UTF-8")
    (root / "locked.txt").write_text("no read permission")
    real_open = os.open

    def deny(path: object, *args: object, **kwargs: object) -> int:
        if str(path).endswith("locked.txt"):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(documents.os, "open", deny)  # chmod 000 does not stop root, which CI may be
    docs, quarantined = scan_directory(root)
    reasons = {q["doc_id"]: q["reason"] for q in quarantined}
    assert sorted(d.doc_id for d in docs) == ["alias.txt", "sub/real.txt", "with space\nand newline é.txt"]
    assert reasons == {
        "dangling.txt": "broken symlink (its target does not exist)",
        "latin1-\\xe9.txt": "file name is not valid UTF-8",
        "locked.txt": "cannot read: Permission denied",
        "loop-a.txt": "symlink loop",
        "loop-b.txt": "symlink loop",
        "outside.txt": "symlink points outside the folder (not followed)",
        "pipe.txt": "not a regular file (FIFO, socket or device)",
        "sub/up": "symlink to a folder (not followed)",
    }
