"""``relabel distill`` and ``relabel label``: the student recipe and labeling from files alone."""

from __future__ import annotations

import csv
import time
from pathlib import Path

import click

from relabel.benchmarks import read_docs_jsonl, read_queries


def _pairs_file(path: Path) -> list[tuple[str, str]]:
    """(qid, docid) pairs from a qrels-like file (``qid 0 docid [grade]``) or ``qid docid`` lines."""
    pairs = []
    for line in path.read_text(encoding="utf-8").split("\n"):
        parts = line.split()
        if len(parts) == 2:
            pairs.append((parts[0], parts[1]))
        elif len(parts) >= 3:
            pairs.append((parts[0], parts[2]))
    return pairs


@click.command()
@click.option("--queries", "queries_path", type=click.Path(exists=True, path_type=Path), required=True,
              help="queries.tsv (qid TAB text)")
@click.option("--docs", "docs_path", type=click.Path(exists=True, path_type=Path), required=True,
              help="docs.jsonl ({'docid', 'text'})")
@click.option("--teacher-labels", "runs", type=click.Path(exists=True, path_type=Path), multiple=True, required=True,
              help="TREC qrels-format teacher labeling; repeat for an ensemble (majority vote)")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), required=True)
@click.option("--epochs", default=3, show_default=True)
@click.option("--base-model", default="", help="local Hugging Face folder (default: the MiniLM-L6 package)")
def distill(queries_path: Path, docs_path: Path, runs: tuple[Path, ...], out_dir: Path, epochs: int,
            base_model: str) -> None:
    """Train the cross-encoder student on teacher labels from files (the same code as the asset)."""
    from relabel.models import minilm_dir
    from relabel.student import StudentConfig, train_cross_encoder
    from relabel.teacher_votes import combine_votes, read_recorded_labels

    queries = read_queries(queries_path)
    members = []
    for run in runs:
        labels = read_recorded_labels(run)
        members.append([{"pair_source": "file", "qid": q, "doc_id": d, "labeler_id": run.stem, "model": run.stem,
                         "prompt_id": None, "prompt_version": None, "status": "ok", "grade": g,
                         "expected_grade": float(g), "p0": None, "p1": None, "p2": None, "p3": None,
                         "error": None, "latency_s": None} for (q, d), g in labels.items() if q in queries])
    labels = members[0] if len(members) == 1 else combine_votes(members, "ensemble")
    docs = read_docs_jsonl(docs_path, {row["doc_id"] for row in labels})
    rows = [{"qid": r["qid"], "query_text": queries[r["qid"]], "title": docs[r["doc_id"]]["title"],
             "doc_text": docs[r["doc_id"]]["text"], "grade": r["grade"], "expected_grade": r["expected_grade"]}
            for r in labels if r["status"] == "ok" and r["doc_id"] in docs]
    click.echo(f"training on {len(rows)} teacher-labeled pairs over {len({r['qid'] for r in rows})} queries")
    meta = train_cross_encoder(rows, StudentConfig(base_model=base_model or str(minilm_dir()), epochs=epochs),
                               out_dir)
    click.echo(f"saved to {out_dir} in {meta['train_seconds']:.0f} s; history {meta['history']}")


@click.command()
@click.option("--model", "model_dir", type=click.Path(exists=True, path_type=Path), required=True)
@click.option("--queries", "queries_path", type=click.Path(exists=True, path_type=Path), required=True)
@click.option("--docs", "docs_path", type=click.Path(exists=True, path_type=Path), required=True)
@click.option("--pairs", "pairs_path", type=click.Path(exists=True, path_type=Path), required=True,
              help="pairs to label: 'qid 0 docid ...' (qrels/run-like) or 'qid docid' lines")
@click.option("--out", "out_path", type=click.Path(path_type=Path), required=True,
              help="TREC qrels-format grades; expected grades go to <out>.scores.tsv")
def label(model_dir: Path, queries_path: Path, docs_path: Path, pairs_path: Path, out_path: Path) -> None:
    """Label any list of pairs with a student checkpoint."""
    from relabel.student import CrossEncoderLabeler, pair_text

    queries = read_queries(queries_path)
    pairs = [(q, d) for q, d in _pairs_file(pairs_path) if q in queries]
    docs = read_docs_jsonl(docs_path, {d for _, d in pairs})
    pairs = [(q, d) for q, d in pairs if d in docs]
    labeler = CrossEncoderLabeler.load(model_dir)
    started = time.perf_counter()
    scores, grades = labeler.predict([queries[q] for q, _ in pairs],
                                     [pair_text({"title": docs[d]["title"], "doc_text": docs[d]["text"]})
                                      for _, d in pairs])
    seconds = time.perf_counter() - started
    out_path.write_text("".join(f"{q} 0 {d} {g}\n" for (q, d), g in zip(pairs, grades, strict=True)))
    with open(f"{out_path}.scores.tsv", "w", newline="") as handle:
        writer = csv.writer(handle, delimiter="\t")
        writer.writerow(["qid", "docid", "expected_grade", "grade"])
        writer.writerows([q, d, f"{s:.4f}", g] for (q, d), s, g in zip(pairs, scores, grades, strict=True))
    click.echo(f"labeled {len(pairs)} pairs in {seconds:.1f} s ({len(pairs) / max(seconds, 1e-9):.0f} pairs/s)")
