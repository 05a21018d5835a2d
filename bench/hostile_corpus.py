"""Build a hostile document share (generated, never committed): the inputs of issue 13 that a real share holds.

    python bench/hostile_corpus.py OUT_DIR [--scale full|ci]

``full`` writes a few hundred hostile inputs plus a folder of 10,000 tiny files and a 50 MB text file;
``ci`` writes about 35 inputs, every category kept, small enough for a unit test. Each input is listed with
its category and what should happen to it: ``ingest``, ``quarantine``, or ``either`` (decided by the
encoding detector, or by the permissions of the user running it: root reads a ``chmod 000`` file).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import BinaryIO

TEXT_SUFFIXES = (".txt", ".md", ".html", ".json", ".eml", ".htm", ".markdown")
SENTENCE = "Expense claims above 500 EUR need a manager's approval before the travel desk books anything. "
BINARIES = {
    "png": b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x10\x00\x00\x00\x10\x08\x06\x00\x00\x00",
    "pdf": b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Type /Catalog >>\nstream\n\x78\x9c\x00\x01\xff",
    "zip": b"PK\x03\x04\x14\x00\x00\x00\x08\x00" + bytes(range(256)),
    "elf": b"\x7fELF\x02\x01\x01\x00" + bytes(64) + b"\x02\x00\x3e\x00",
    "gif": b"GIF89a\x10\x00\x10\x00\x80\x00\x00\xff\xff\xff\x00\x00\x00!\xf9\x04",
    "jpeg": b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00",
    "gzip": b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03" + bytes(range(200)),
    "7z": b"7z\xbc\xaf\x27\x1c\x00\x04" + bytes(range(64)),
    "ole": b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(512),
    "class": b"\xca\xfe\xba\xbe\x00\x00\x00\x41" + bytes(range(128)),
    "sqlite": b"SQLite format 3\x00\x10\x00\x01\x01" + bytes(100),
}


@dataclass(frozen=True)
class HostileInput:
    """One generated input: its doc id (path relative to the root, as ``scan_directory`` names it), its
    category, and the expected outcome (``ingest``, ``quarantine`` or ``either``)."""

    doc_id: str
    category: str
    expect: str


class _Writer:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.inputs: list[HostileInput] = []

    def add(self, rel: str, content: bytes, category: str, expect: str) -> Path:
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
        self.inputs.append(HostileInput(rel, category, expect))
        return path

    def link(self, rel: str, target: str | Path, category: str, expect: str = "quarantine") -> None:
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(target, path)
        self.inputs.append(HostileInput(rel, category, expect))


def _pick(items: list, ci: bool, n: int = 2) -> list:
    return items[:n] if ci else items


def build_hostile_corpus(root: Path, scale: str = "full", seed: int = 13) -> list[HostileInput]:
    """Write the hostile share under ``root`` (created; must not exist or be empty) and list its inputs.
    A symlink target outside the share is written next to ``root``."""
    ci = scale == "ci"
    rng = random.Random(seed)
    root.mkdir(parents=True, exist_ok=True)
    w = _Writer(root)
    good = SENTENCE.encode()

    # empty and whitespace-only files
    for suffix in _pick(list(TEXT_SUFFIXES), ci):
        w.add(f"empty/empty{suffix}", b"", "empty", "quarantine")
    for i, blank in enumerate(_pick([b"   ", b"\n\n\n", b"\t \r\n \t", "\xa0\u2003\n".encode(), b" " * 4096], ci, 1)):
        w.add(f"empty/blank-{i}.txt", blank, "whitespace only", "quarantine")

    # binary files under text suffixes
    kinds = list(BINARIES.items()) + [("random", bytes(rng.randrange(256) for _ in range(4096)))]
    pairs = [(k, b, s) for k, b in kinds for s in TEXT_SUFFIXES]
    for kind, blob, suffix in pairs[::11] if ci else pairs:
        w.add(f"binary/{kind}{suffix}", blob, "binary under text suffix", "quarantine")

    # NUL bytes
    nuls = [b"\x00" * 2000, good + b"\x00" * 64 + good, b"\x00\x01\x02\x03" * 500, good.replace(b" ", b"\x00")]
    for i, blob in enumerate(_pick(nuls, ci)):
        w.add(f"nul/nul-{i}.txt", blob, "NUL bytes", "quarantine")

    # invalid UTF-8 (stray bytes in otherwise ASCII text): the detector picks a legacy code page, or not
    for i in range(2 if ci else 30):
        blob = bytearray(good * 3)
        for _ in range(1 + i % 10):
            blob.insert(rng.randrange(len(blob)), rng.choice([0x80, 0xC3, 0xE2, 0xF0, 0xFF, 0xFE, 0xC0]))
        w.add(f"encoding/invalid-utf8-{i}.md", bytes(blob), "invalid UTF-8", "either")

    # encodings a share holds
    text = "Title: Reisekosten\n\nÜber 500 € brauchen die Zustimmung der Führungskraft; naïve Größe, São Paulo.\n"
    encodings = [
        ("utf16-bom.txt", text.encode("utf-16")),
        ("utf16be-bom.txt", b"\xfe\xff" + text.encode("utf-16-be")),
        ("utf32-bom.txt", text.encode("utf-32")),
        ("utf8-bom.md", b"\xef\xbb\xbf" + text.encode()),
        ("utf16-no-bom.txt", text.encode("utf-16-le")),
        ("latin1.txt", text.replace("€", "EUR").encode("latin-1")),
        ("cp1252.html", f"<html><body><p>{text}</p></body></html>".encode("cp1252")),
        ("shift-jis.txt", ("経費精算は上長の承認が必要です。" * 8).encode("shift_jis")),
        ("gbk.txt", ("报销需要经理批准，出差前请提交申请。" * 8).encode("gbk")),
        ("koi8-r.txt", ("Командировочные расходы утверждает руководитель отдела. " * 4).encode("koi8-r")),
        ("utf16-json.json", json.dumps({"title": "Spesen", "body": text}).encode("utf-16")),
        ("utf16-eml.eml", ("Subject: Spesen\nFrom: a@b.example\n\n" + text).encode("utf-16")),
    ]
    for name, blob in _pick(encodings, ci, 3):
        w.add(f"encoding/{name}", blob, "UTF-16/32 and legacy encodings", "ingest")

    # size: 50 MB of text, a 1 MB single line, a whitespace bomb
    big = 3 << 20 if ci else 50 << 20
    with _open_new(root / "size" / "huge.txt") as handle:
        block = (SENTENCE * 100 + "\n").encode()
        written = 0
        while written < big:
            handle.write(block)
            written += len(block)
    w.inputs.append(HostileInput("size/huge.txt", "huge text file", "ingest"))
    w.add("size/one-line.txt", (SENTENCE * ((1 << 20) // len(SENTENCE))).encode(), "1 MB single line", "ingest")
    w.add("size/whitespace-bomb.txt", b"\n" + b" \t" * 500_000 + b"x", "whitespace bomb", "ingest")

    # HTML
    html = [
        (
            "deep.html",
            "<html><body>" + "<div>" * 10_000 + "deep answer" + "</div>" * 10_000 + "</body></html>",
            "ingest",
        ),
        ("unclosed.html", "<div><span>" * 5_000 + "unclosed answer", "ingest"),
        (
            "scripts-only.html",
            "<html><head><script>var a=1;</script></head><body>"
            + "<script>x()</script>" * 50
            + "<style>p{}</style></body></html>",
            "quarantine",
        ),
        ("hidden-only.html", '<body><div hidden="">secret</div><p style="display: none">more</p></body>', "quarantine"),
        (
            "nested-hidden.html",
            "<body><p>visible</p>" + '<div style="display:none">' * 5_000 + "x" + "</div>" * 5_000 + "</body>",
            "ingest",
        ),
        ("comment-bomb.html", "<!--" * 20_000 + "<p>text after comments</p>", "either"),
        ("entities.html", "<p>" + "&amp;&#x1F600;&#0;&#xD800;&nbsp;" * 2_000 + "</p>", "ingest"),
        ("attr-bomb.html", "<p " + " ".join(f'a{i}="{i}"' for i in range(20_000)) + ">attrs</p>", "ingest"),
    ]
    for name, page, expect in _pick(html, ci, 4):
        w.add(f"html/{name}", page.encode(), "hostile HTML", expect)

    # JSON with wrong types or deep nesting
    jsons = [
        ("deep-array.json", "[" * 50_000 + "]" * 50_000, "quarantine"),
        ("deep-field.json", '{"body": "x", "meta": ' + '{"a": ' * 50_000 + "1" + "}" * 50_000 + "}", "quarantine"),
        ("body-int.json", '{"body": 12}', "quarantine"),
        ("body-list.json", '{"body": ["a", "b"]}', "quarantine"),
        ("body-null.json", '{"body": null, "title": "t"}', "quarantine"),
        ("top-list.json", "[1, 2, 3]", "quarantine"),
        ("top-string.json", '"just a string"', "quarantine"),
        (
            "wrong-meta.json",
            '{"body": "Fine body.", "title": {"a": 1}, "author": [1], "modified": 17, "type": true}',
            "ingest",
        ),
        ("surrogates.json", '{"body": "lone \\udcff surrogate and \\u0000 NUL"}', "ingest"),
        ("truncated.json", '{"body": "never closed', "quarantine"),
        ("huge-number.json", '{"body": "n", "x": 1' + "0" * 100_000 + "}", "either"),
    ]
    for name, blob, expect in _pick(jsons, ci, 3):
        w.add(f"json/{name}", blob.encode(), "JSON wrong types or deep nesting", expect)

    # Markdown front matter
    bomb = ["a: &a [x, x, x, x, x, x, x, x, x]"] + [
        f"{n}: &{n} [" + ", ".join([f"*{p}"] * 9) + "]" for p, n in zip("abcdefgh", "bcdefghi", strict=True)
    ]
    fronts = [
        ("alias-bomb.md", "---\n" + "\n".join(bomb) + "\ntitle: *i\n---\nBody after a YAML alias bomb.\n", "ingest"),
        ("deep-yaml.md", "---\ntitle: " + "[" * 20_000 + "]" * 20_000 + "\n---\nbody\n", "quarantine"),
        ("bad-yaml.md", "---\ntitle: [unclosed\n---\nbody\n", "quarantine"),
        ("python-tag.md", "---\ntitle: !!python/object/apply:os.system ['echo pwned']\n---\nbody\n", "quarantine"),
    ]
    for name, blob, expect in _pick(fronts, ci, 2):
        w.add(f"markdown/{name}", blob.encode(), "hostile front matter", expect)

    # malformed e-mails
    emails = [
        ("no-headers.eml", b"just a line without headers\n", "either"),
        ("headers-only.eml", b"Subject: nothing\nFrom: x@y.example\n", "quarantine"),
        (
            "garbage-headers.eml",
            b"Subject: =?utf-8?b?!!!?=\nFrom: <<<>>>\nDate: yesterday-ish\n\nThe body survives.\n",
            "ingest",
        ),
        ("bad-base64.eml", b"Subject: b\nContent-Transfer-Encoding: base64\n\n!!!not base64***\n", "either"),
        ("unknown-charset.eml", b"Subject: c\nContent-Type: text/plain; charset=x-no-such\n\nbody\n", "either"),
        ("no-boundary.eml", b"Subject: m\nContent-Type: multipart/mixed\n\n--x\nbody\n--x--\n", "either"),
        ("attachment-only.eml", b"Subject: a\nContent-Type: application/octet-stream\n\nAAAA\n", "quarantine"),
        ("header-bomb.eml", b"Subject: " + b"A" * 200_000 + b"\n" + b"X-H: v\n" * 5_000 + b"\nbody\n", "ingest"),
    ]
    for name, blob, expect in _pick(emails, ci, 3):
        w.add(f"email/{name}", blob, "malformed e-mail", expect)

    # links, permissions, FIFOs
    outside = root.parent / f"{root.name}-outside.txt"
    outside.write_text("a file outside the share")
    w.link("links/loop-a.txt", "loop-b.txt", "symlink loop")
    w.link("links/loop-b.txt", "loop-a.txt", "symlink loop")
    w.link("links/dangling.md", "does-not-exist.md", "broken symlink")
    w.link("links/outside.txt", outside, "symlink outside the share")
    w.link("links/up", "..", "symlink to a folder")
    w.add("links/target.txt", good, "symlink target", "ingest")
    w.link("links/alias.txt", "target.txt", "symlink inside the share", "ingest")
    locked = w.add("perm/locked.txt", good, "no read permission", "either")
    locked.chmod(0)
    os.mkfifo(root / "perm" / "pipe.txt")
    w.inputs.append(HostileInput("perm/pipe.txt", "FIFO", "quarantine"))

    # names
    names = [
        "with space.txt",
        "ünïcödé ファイル.md",
        "line\nbreak.txt",
        "-leading-dash.txt",
        "emoji 📄.txt",
        "rtl \u202e txt.md",
        "x" * 200 + ".txt",
        "tab\tname.txt",
        "quote'\"name.txt",
        "back\\slash.txt",
    ]
    for name in _pick(names, ci, 3):
        w.add(f"names/{name}", good, "odd file name", "ingest")
    undecodable = os.fsdecode(b"names/latin1-caf\xe9.txt")
    (root / undecodable).write_bytes(good)
    w.inputs.append(HostileInput("names/latin1-caf\\xe9.txt", "name not valid UTF-8", "quarantine"))

    # exact duplicates under different names
    for i in range(2 if ci else 5):
        w.add(f"duplicates/copy-{i}.txt", b"Title: Same\n\n" + good * 2, "exact duplicate", "ingest")

    # a folder of tiny files
    words = ["vpn", "badge", "payroll", "leave", "laptop", "expense", "wifi", "printer", "travel", "holiday"]
    for i in range(10 if ci else 10_000):
        w.add(f"tiny/{i // 1000:02d}/note-{i:05d}.txt", f"{rng.choice(words)} {i}".encode(), "tiny file", "ingest")
    return w.inputs


def _open_new(path: Path) -> BinaryIO:
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.open("wb")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path)
    parser.add_argument("--scale", choices=["full", "ci"], default="full")
    args = parser.parse_args()
    inputs = build_hostile_corpus(args.out, args.scale)
    manifest = args.out.parent / f"{args.out.name}-inputs.json"
    manifest.write_text(json.dumps([asdict(i) for i in inputs], indent=1))
    print(f"{len(inputs)} inputs under {args.out}; list in {manifest}", file=sys.stderr)


if __name__ == "__main__":
    main()
