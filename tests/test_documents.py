"""Document parsing: metadata from every format, and quarantine reasons for bad files."""

from pathlib import Path

import pytest

from relabel.benchmarks import demo_corpus_dir
from relabel.documents import DocumentError, read_document, scan_directory

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
        ("binary.txt", b"\xff\xfe\x00bad", "not UTF-8"),
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
