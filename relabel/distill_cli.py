"""``relabel distill`` and ``relabel label``: the student recipes and labeling from files alone."""

from __future__ import annotations

import csv
import hashlib
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import click
import numpy as np

from relabel.evaluation.judgments import read_docs_jsonl, read_queries
from relabel.pair_stream import PairChunk

LABEL_CHUNK = 4096


def student_default(name: str) -> object:
    """A StudentConfig field's default: the one home of the recipe's defaults."""
    from relabel.student import StudentConfig

    return StudentConfig.__dataclass_fields__[name].default


@click.command()
@click.option(
    "--queries",
    "queries_path",
    type=click.Path(exists=True, path_type=Path),
    required=True,
    help="queries.tsv (qid TAB text)",
)
@click.option(
    "--docs",
    "docs_path",
    type=click.Path(exists=True, path_type=Path),
    required=True,
    help="docs.jsonl ({'docid', 'text'[, 'title']})",
)
@click.option(
    "--teacher-labels",
    "runs",
    type=click.Path(exists=True, path_type=Path),
    multiple=True,
    required=True,
    help="TREC qrels-format teacher labeling; repeat for an ensemble (majority grade, vote shares as soft targets)",
)
@click.option("--out", "out_dir", type=click.Path(path_type=Path), required=True)
@click.option(
    "--recipe",
    type=click.Choice(["cross-encoder", "bi-encoder", "slm"]),
    default=student_default("recipe"),
    show_default=True,
)
@click.option(
    "--objective",
    type=click.Choice(["soft", "regression"]),
    default=student_default("objective"),
    show_default=True,
    help="cross-encoder loss",
)
@click.option(
    "--epochs",
    default=student_default("epochs"),
    show_default=True,
    help="encoder epochs (early stopping may end sooner; 0 = base weights, thresholds only)",
)
@click.option(
    "--batching",
    type=click.Choice(["random", "length", "query"]),
    default=student_default("batching"),
    show_default=True,
    help="encoder batches: shuffled rows, similar lengths together, or one query each",
)
@click.option(
    "--rank-weight",
    default=student_default("rank_weight"),
    show_default=True,
    help="weight of margin-MSE on same-query expected-grade gaps (encoders; use with --batching query)",
)
@click.option(
    "--precision",
    type=click.Choice(["auto", "fp32", "bf16"]),
    default=student_default("precision"),
    show_default=True,
    help="autocast: auto = bf16 on a GPU or a CPU with native bf16, else fp32",
)
@click.option("--max-length", default=student_default("max_length"), show_default=True, help="encoder tokens per text")
@click.option(
    "--init-from",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="start from this student checkpoint (same recipe) and fine-tune it on the new teacher labels; "
    "recorded as the parent in the model card",
)
@click.option("--max-steps", default=student_default("max_steps"), show_default=True, help="SLM optimizer steps")
@click.option(
    "--lora-r", default=student_default("lora_r"), show_default=True, help="SLM LoRA rank (0 = full fine-tuning)"
)
@click.option(
    "--base-model",
    default="",
    help="local Hugging Face folder, for the encoders an alias (minilm-l6, mpnet-base after `make setup-mpnet`), "
    "for the SLM a .gguf path or alias (default: MiniLM-L6 for the encoders, smollm2-135m for the SLM)",
)
@click.option(
    "--learning-rate",
    default=student_default("learning_rate"),
    show_default=True,
    help="peak learning rate (LoRA wants ~2e-4)",
)
@click.option("--seed", default=student_default("seed"), show_default=True)
def distill(
    queries_path: Path,
    docs_path: Path,
    runs: tuple[Path, ...],
    out_dir: Path,
    recipe: str,
    objective: str,
    epochs: int,
    batching: str,
    rank_weight: float,
    precision: str,
    max_length: int,
    init_from: Path | None,
    max_steps: int,
    lora_r: int,
    base_model: str,
    learning_rate: float,
    seed: int,
) -> None:
    """Train a student on teacher labels from files (the same code as the student_checkpoint asset)."""
    from relabel.models import minilm_dir
    from relabel.student import StudentConfig, model_card, read_meta, train_student
    from relabel.teacher.votes import recorded_teacher, training_rows

    queries = read_queries(queries_path)
    labels = recorded_teacher(list(runs), set(queries))
    docs = read_docs_jsonl(docs_path, {row["doc_id"] for row in labels})
    rows = training_rows(queries, docs, labels)
    if not rows:
        raise click.ClickException("no teacher-labeled pair has both its query and its document in the inputs")
    click.echo(f"training on {len(rows)} teacher-labeled pairs over {len({r['qid'] for r in rows})} queries")
    if init_from and not base_model:
        base_model = str(read_meta(init_from).get("base_model") or "")
    default_base = "" if recipe == "slm" else str(minilm_dir())
    try:
        config = StudentConfig(
            base_model=base_model or default_base,
            recipe=recipe,
            objective=objective,
            epochs=epochs,
            batching=batching,
            rank_weight=rank_weight,
            precision=precision,
            max_length=max_length,
            init_from=str(init_from or ""),
            max_steps=max_steps,
            lora_r=lora_r,
            learning_rate=learning_rate,
            seed=seed,
        )
        meta = train_student(rows, config, out_dir)
    except (ValueError, FileNotFoundError) as error:
        raise click.ClickException(str(error)) from error
    teacher_id = "+".join(run.stem for run in runs)
    (out_dir / "README.md").write_text(model_card(meta, teacher_id, _files_hash([queries_path, docs_path, *runs])))
    click.echo(f"saved to {out_dir} in {meta['train_seconds']:.0f} s; thresholds {meta['thresholds']}")


def _files_hash(paths: list[Path]) -> str:
    """sha256 over the input files' hashes: the training data's identity."""
    from relabel.paths import file_sha256

    return hashlib.sha256("".join(file_sha256(p) for p in paths).encode()).hexdigest()


@click.command()
@click.option("--model", "model_dir", type=click.Path(exists=True, path_type=Path), required=True)
@click.option(
    "--queries",
    "queries_path",
    type=click.Path(exists=True, path_type=Path),
    help="queries.tsv (qid TAB text); not needed when --pairs is a Parquet file with query_text and doc_text",
)
@click.option(
    "--docs",
    "docs_path",
    type=click.Path(exists=True, path_type=Path),
    help="docs.jsonl ({'docid', 'text'[, 'title']}); not needed with a self-contained Parquet --pairs file",
)
@click.option(
    "--pairs",
    "pairs_path",
    type=click.Path(exists=True, path_type=Path),
    required=True,
    help="pairs to label: 'qid 0 docid ...' (qrels/run-like) or 'qid docid' lines, or a Parquet file (qid, doc_id "
    "[, query_text, doc_text, title]) streamed in chunks",
)
@click.option(
    "--out",
    "out_path",
    type=click.Path(path_type=Path),
    required=True,
    help="TREC qrels-format grades with grade probabilities in <out>.probs.tsv, or one Parquet file (.parquet)",
)
@click.option(
    "--chunk-size",
    default=LABEL_CHUNK,
    show_default=True,
    type=click.IntRange(min=1),
    help="pairs read, labeled and written at a time (memory is bounded by a chunk, not by the pairs)",
)
@click.option(
    "--batch-size",
    default=0,
    show_default=True,
    envvar="RELABEL_STUDENT_BATCH_SIZE",
    type=click.IntRange(min=0),
    help="pairs per forward pass; 0 = from free GPU memory on a GPU, the recipe's default on CPU",
)
@click.option(
    "--threads",
    default=0,
    show_default=True,
    type=click.IntRange(min=0),
    help="torch intra-op threads; 0 = every core (use 1 per process when several shard processes share a machine)",
)
@click.option(
    "--teacher-labels",
    "teacher_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="a recorded teacher labeling (qrels format): the cascade takes its grade on the routed pairs "
    "(routing per pair in <out>.routing.tsv; routing ranks all pairs, so their labels are kept until the end)",
)
@click.option(
    "--route-share",
    type=click.FloatRange(0.0, 1.0),
    default=0.2,
    show_default=True,
    help="share of the pairs routed to the teacher (with --teacher-labels)",
)
@click.option(
    "--route-usd",
    type=click.FloatRange(min=0.0),
    help="USD cap on the teacher pairs, at --teacher-usd-per-1k (the tighter of the two caps wins)",
)
@click.option(
    "--teacher-usd-per-1k",
    type=click.FloatRange(min=0.0, min_open=True),
    help="teacher price per 1,000 pairs (for --route-usd)",
)
@click.option("--routing", type=click.Choice(["uncertainty", "random"]), default="uncertainty", show_default=True)
@click.option(
    "--uncertainty",
    type=click.Choice(["entropy", "margin"]),
    default="entropy",
    show_default=True,
    help="uncertainty: entropy of the student's grade distribution, or its expected grade's distance "
    "from the nearest threshold",
)
@click.option(
    "--random-slice",
    type=click.FloatRange(0.0, 1.0),
    default=0.1,
    show_default=True,
    help="share of the teacher budget still routed at random (unbiased student-teacher agreement)",
)
@click.option("--seed", default=0, show_default=True, help="seed of the random routing")
def label(
    model_dir: Path,
    queries_path: Path | None,
    docs_path: Path | None,
    pairs_path: Path,
    out_path: Path,
    chunk_size: int,
    batch_size: int,
    threads: int,
    teacher_path: Path | None,
    route_share: float,
    route_usd: float | None,
    teacher_usd_per_1k: float | None,
    routing: str,
    uncertainty: str,
    random_slice: float,
    seed: int,
) -> None:
    """Label any list of pairs with a student checkpoint, streaming: pairs are read, labeled and written a chunk at
    a time. With --teacher-labels, a cascade: the student labels every pair and the teacher's recorded grade
    replaces it on the routed share."""
    from relabel.pair_stream import LabelWriter
    from relabel.student import load_student
    from relabel.student.cross_encoder import set_inference_threads

    if route_usd is not None and teacher_usd_per_1k is None:
        raise click.BadParameter("--route-usd needs --teacher-usd-per-1k")
    missing: list[tuple[str, str]] = []
    chunks = _pair_chunks(pairs_path, queries_path, docs_path, chunk_size, lambda q, d: missing.append((q, d)))
    set_inference_threads(threads)
    labeler = load_student(model_dir, batch_size=batch_size)
    started = time.perf_counter()
    kept: list = []  # the cascade's rows: routing ranks every pair
    with LabelWriter(out_path) as writer:
        for chunk in chunks:
            scores, grades, probs = labeler.predict_with_probabilities(chunk.queries, chunk.docs)
            if teacher_path is not None:
                kept.extend(zip(zip(chunk.qids, chunk.doc_ids, strict=True), scores, grades, probs, strict=True))
            else:
                writer.write(chunk.qids, chunk.doc_ids, scores, grades, probs)
                click.echo(f"labeled {writer.rows} pairs", err=True)
        if teacher_path is not None:
            final = _cascade(
                kept,
                teacher_path,
                labeler.thresholds,
                out_path,
                route_share,
                route_usd,
                teacher_usd_per_1k,
                routing,
                uncertainty,
                random_slice,
                seed,
            )
            if kept:
                keys, scores, _, probs = zip(*kept, strict=True)
                writer.write([q for q, _ in keys], [d for _, d in keys], np.array(scores), final, np.array(probs))
        rows = writer.rows
    seconds = time.perf_counter() - started
    if missing:
        click.echo(
            f"skipped {len(missing)} pairs whose query or document is not in the inputs, e.g. {missing[0]}", err=True
        )
    click.echo(
        f"labeled {rows} pairs in {seconds:.1f} s ({rows / max(seconds, 1e-9):.0f} pairs/s, "
        f"batch {labeler.batch_size}, chunk {chunk_size})"
    )


def _pair_chunks(
    pairs_path: Path,
    queries_path: Path | None,
    docs_path: Path | None,
    chunk_size: int,
    skipped: Callable[[str, str], None],
) -> Iterator[PairChunk]:
    """The pairs in chunks with their texts: a self-contained Parquet file alone; otherwise the queries file and
    the documents the pairs name (read once, before labeling starts)."""
    from relabel.pair_stream import (
        is_parquet,
        iter_parquet_chunks,
        iter_text_chunks,
        iter_text_pairs,
        parquet_doc_ids,
        self_contained,
    )

    if is_parquet(pairs_path) and self_contained(pairs_path):
        return iter_parquet_chunks(pairs_path, chunk_size, skipped=skipped)
    if queries_path is None or docs_path is None:
        raise click.UsageError("--queries and --docs are needed unless --pairs is a Parquet file with the texts")
    queries = read_queries(queries_path)
    if is_parquet(pairs_path):
        docs = read_docs_jsonl(docs_path, parquet_doc_ids(pairs_path))
        return iter_parquet_chunks(pairs_path, chunk_size, queries, docs, skipped=skipped)
    try:
        doc_ids = {d for _, d in iter_text_pairs(pairs_path)}
    except ValueError as error:
        raise click.BadParameter(str(error)) from error
    docs = read_docs_jsonl(docs_path, doc_ids)
    return iter_text_chunks(iter_text_pairs(pairs_path), chunk_size, queries, docs, skipped=skipped)


def _cascade(
    rows: list,
    teacher_path: Path,
    thresholds: list[float],
    out_path: Path,
    share: float,
    usd: float | None,
    usd_per_1k: float | None,
    policy: str,
    variant: str,
    random_share: float,
    seed: int,
) -> list[int]:
    """Route the student's labeled ``rows`` ((qid, docid), score, grade, probabilities) to the recorded teacher;
    write ``<out>.routing.tsv`` and return the final grades."""
    import numpy as np

    from relabel.teacher.routing import budget_pairs, combine, route
    from relabel.teacher.votes import read_recorded_labels

    teacher = read_recorded_labels(teacher_path)
    keys = [key for key, _, _, _ in rows]
    scores = np.array([float(s) for _, s, _, _ in rows])
    grades = np.array([int(g) for _, _, g, _ in rows])
    per_pair = None if usd_per_1k is None else usd_per_1k / 1000
    budget = budget_pairs(len(rows), share=share, usd=usd, usd_per_pair=per_pair)
    routed = route(
        len(rows),
        budget,
        policy,
        variant,
        random_share=random_share,
        seed=seed,
        probabilities=np.array([p for _, _, _, p in rows]).reshape(len(rows), 4),
        expected=scores,
        thresholds=thresholds,
        keys=keys,
    )
    teacher_grades = np.array([float(teacher.get(key, np.nan)) for key in keys])
    labels = combine(routed, grades, scores, teacher_grades)
    with open(f"{out_path}.routing.tsv", "w", newline="") as handle:
        writer = csv.writer(handle, delimiter="\t")
        writer.writerow(
            [
                "qid",
                "docid",
                "grade",
                "labeler_kind",
                "routing_reason",
                "routing_score",
                "student_grade",
                "teacher_grade",
            ]
        )
        writer.writerows(
            [q, d, g, kind, reason, "" if np.isnan(score) else f"{score:.5f}", sg, "" if np.isnan(tg) else int(tg)]
            for (q, d), g, kind, reason, score, sg, tg in zip(
                keys,
                labels.grade,
                labels.labeler_kind,
                labels.routing_reason,
                labels.routing_score,
                grades,
                teacher_grades,
                strict=True,
            )
        )
    used = int((labels.labeler_kind == "teacher").sum())
    missing = int((labels.routing_reason == "teacher_missing").sum())
    click.echo(
        f"cascade: {used} of {len(rows)} pairs ({used / max(len(rows), 1):.1%}) take the teacher's grade "
        f"({policy}{f' by {variant}' if policy == 'uncertainty' else ''}, {routed.random_slice} of the "
        f"{routed.budget} routed pairs at random"
        + (f", {missing} routed pairs without a teacher grade kept the student's" if missing else "")
        + ")"
    )
    return [int(g) for g in labels.grade]
