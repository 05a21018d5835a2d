"""What every student recipe shares: configuration, query-grouped split, grade thresholds, targets, the
epoch loop of the encoders, checkpoint metadata and the model card."""

from __future__ import annotations

import json
import random
import sys
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

STUDENT_CONFIG_FILE = "relabel_student.json"
RECIPES = ("cross-encoder", "bi-encoder", "slm")  # implemented in relabel.student.registry
OBJECTIVES = ("soft", "regression")
BATCHING = ("random", "length", "query")
PRECISIONS = ("auto", "fp32", "bf16")
CPU_BF16_FLAGS = ("avx512_bf16", "amx_bf16")
LENGTH_BUCKET_BATCHES = 50
PROGRESS_EVERY = 10  # batches between loss updates on the progress bar


@dataclass(frozen=True)
class StudentConfig:
    """Training settings. ``objective`` applies to the cross-encoder: ``soft`` = cross-entropy against the
    teacher's grade distribution (4-grade head), ``regression`` = MSE on the expected grade (1 output).
    ``epochs`` and ``patience`` apply to the encoders, ``max_steps`` and ``lora_r`` to the SLM (``lora_r`` 0 =
    full fine-tuning).

    Encoder-only: ``batching`` = ``random`` (shuffled rows), ``length`` (rows of similar length batched
    together, batch order shuffled: less padding) or ``query`` (each batch holds one query's pairs, length
    sorted, which the ranking loss needs); ``rank_weight`` adds margin-MSE between the student's and the
    teacher's expected-grade gaps of same-query pairs in a batch; ``precision`` = ``auto`` (bf16 autocast on a
    GPU or a CPU with native bf16, else fp32), ``fp32`` or ``bf16``. ``init_from``: a student checkpoint of the
    same recipe whose weights (and head) training starts from instead of ``base_model``; it is recorded as the
    parent."""

    base_model: str
    recipe: str = "bi-encoder"
    objective: str = "soft"
    max_length: int = 128
    batch_size: int = 32
    epochs: int = 1
    learning_rate: float = 3e-5
    val_fraction: float = 0.2
    patience: int = 1
    seed: int = 13
    max_steps: int = 300
    lora_r: int = 0
    max_doc_chars: int = 600
    batching: str = "length"
    rank_weight: float = 0.0
    precision: str = "auto"
    init_from: str = ""

    def __post_init__(self) -> None:
        if self.recipe not in RECIPES:
            raise ValueError(f"unknown student recipe {self.recipe!r}: use one of {', '.join(RECIPES)}")
        if self.objective not in OBJECTIVES:
            raise ValueError(f"unknown objective {self.objective!r}: use one of {', '.join(OBJECTIVES)}")
        if self.objective != "soft" and self.recipe != "cross-encoder":
            raise ValueError(f"objective {self.objective!r} exists only for the cross-encoder recipe")
        if self.batching not in BATCHING:
            raise ValueError(f"unknown batching {self.batching!r}: use one of {', '.join(BATCHING)}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"unknown precision {self.precision!r}: use one of {', '.join(PRECISIONS)}")
        if self.rank_weight < 0:
            raise ValueError("rank_weight must be >= 0")
        if self.init_from and self.recipe == "slm":
            raise ValueError("init_from is implemented for the encoder recipes (bi-encoder, cross-encoder)")


class Labeler:
    """A loaded student: recipes implement ``probabilities``; grades come from ``thresholds``. ``model`` is the
    torch module, ``max_length`` its tokens per text and ``batch_size`` its pairs (or texts) per forward pass."""

    thresholds: list[float]
    model: Any
    max_length: int
    batch_size: int

    def probabilities(self, queries: Sequence[str], docs: Sequence[str]) -> np.ndarray:
        """(n, 4) grade probabilities per pair."""
        raise NotImplementedError

    def predict_with_probabilities(
        self, queries: Sequence[str], docs: Sequence[str]
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(expected grades, grades, (n, 4) probabilities)."""
        probabilities = self.probabilities(queries, docs)
        scores = expected_grades(probabilities)
        return scores, apply_thresholds(scores, self.thresholds), probabilities

    def predict(self, queries: Sequence[str], docs: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """(expected grades, grades)."""
        scores, grades, _ = self.predict_with_probabilities(queries, docs)
        return scores, grades


def pair_text(row: dict[str, Any]) -> str:
    """Document side of a student input: title, then body."""
    title = str(row.get("title") or "").strip()
    return f"{title}. {row['doc_text']}" if title else str(row["doc_text"])


def seed_everything(seed: int) -> None:
    """Fixed seeds for Python, NumPy and torch."""
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def query_group_split(rows: Sequence[dict[str, Any]], val_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Train/validation row indices split by query (no query on both sides)."""
    if val_fraction <= 0:
        return list(range(len(rows))), []
    qids = sorted({r["qid"] for r in rows})
    if len(qids) < 3:
        return list(range(len(rows))), []
    val_qids = {q for q in qids if (zlib.crc32(f"{seed}:{q}".encode()) % 1000) / 1000 < val_fraction}
    if not val_qids or len(val_qids) == len(qids):
        val_qids = {qids[0]}
    train = [i for i, r in enumerate(rows) if r["qid"] not in val_qids]
    val = [i for i, r in enumerate(rows) if r["qid"] in val_qids]
    return train, val


def target_distribution(row: dict[str, Any]) -> list[float]:
    """The teacher's grade distribution for a row: its probabilities p0-p3 when it gave them (an ensemble's
    vote shares included), else all mass on its grade."""
    probs = [row.get(f"p{g}") for g in range(4)]
    if all(p is not None and not (isinstance(p, float) and np.isnan(p)) for p in probs):
        total = float(sum(probs))
        if total > 0:
            return [float(p) / total for p in probs]
    return [1.0 if g == int(row["grade"]) else 0.0 for g in range(4)]


def expected_grades(probabilities: np.ndarray) -> np.ndarray:
    """Expected grade (0-3) from (n, 4) grade probabilities."""
    return probabilities @ np.arange(4, dtype=np.float64)


def fit_thresholds(scores: np.ndarray, grades: np.ndarray) -> list[float]:
    """Cut points on the expected-grade scale so predicted grade shares equal the teacher's shares."""
    shares = np.array([(grades == g).mean() for g in range(4)])
    cumulative = np.cumsum(shares)[:3]
    return [float(np.quantile(scores, min(max(c, 0.0), 1.0))) for c in cumulative]


def apply_thresholds(scores: np.ndarray, thresholds: Sequence[float]) -> np.ndarray:
    """Grade = number of cut points strictly below the score."""
    return np.searchsorted(np.asarray(thresholds), scores, side="left").astype(int)


def validation_kappa(
    labeler: Labeler,
    queries: Sequence[str],
    docs: Sequence[str],
    grades: np.ndarray,
    train_idx: Sequence[int],
    val_idx: Sequence[int],
) -> tuple[float, np.ndarray]:
    """Cohen's kappa with the teacher on the validation queries, the student's thresholds fitted on its
    validation scores to the training grade shares (no validation grade used before the comparison)."""
    from sklearn.metrics import cohen_kappa_score

    scores = expected_grades(labeler.probabilities([queries[i] for i in val_idx], [docs[i] for i in val_idx]))
    predicted = apply_thresholds(scores, fit_thresholds(scores, grades[list(train_idx)]))
    kappa = float(cohen_kappa_score(grades[list(val_idx)], predicted, labels=[0, 1, 2, 3]))
    return (0.0 if np.isnan(kappa) else kappa), scores


def final_thresholds(
    labeler: Labeler,
    queries: Sequence[str],
    docs: Sequence[str],
    grades: np.ndarray,
    val_idx: Sequence[int],
    history: Sequence[dict[str, Any]] = (),
) -> list[float]:
    """Thresholds matching the teacher's grade shares. Fitted on the validation queries' scores when training
    changed the weights (queries the student never trained on behave like new queries; training queries'
    scores are inflated), on all rows when there is no validation split or the starting weights were kept
    (``best_epoch(history) == 0``: no row was trained on, so all of them are unbiased and more is better)."""
    idx = list(val_idx) if val_idx and best_epoch(history) != 0 else list(range(len(queries)))
    scores = expected_grades(labeler.probabilities([queries[i] for i in idx], [docs[i] for i in idx]))
    return fit_thresholds(scores, grades)


def best_epoch(history: Sequence[dict[str, Any]]) -> int | None:
    """The epoch whose weights ``fit_epochs`` kept (highest validation kappa, earliest on ties); None without
    validation."""
    scored = [h for h in history if "val_kappa_vs_teacher" in h]
    return max(scored, key=lambda h: (h["val_kappa_vs_teacher"], -h["epoch"]))["epoch"] if scored else None


def encoder_inputs(
    rows: Sequence[dict[str, Any]], config: StudentConfig
) -> tuple[list[str], list[str], Any, np.ndarray, tuple[list[int], list[int]]]:
    """What both encoder recipes train on: query texts, document texts (title and body, cut to twice
    ``max_doc_chars``), the teacher's grade distributions as a float tensor, its grades, and the
    query-grouped (train, validation) split."""
    import torch

    queries = [str(r["query_text"]) for r in rows]
    docs = [pair_text(r)[: config.max_doc_chars * 2] for r in rows]
    targets = torch.tensor([target_distribution(r) for r in rows], dtype=torch.float32)
    grades = np.array([int(r["grade"]) for r in rows])
    return queries, docs, targets, grades, query_group_split(rows, config.val_fraction, config.seed)


def training_batches(
    train_idx: Sequence[int], lengths: Sequence[int], qids: Sequence[str], config: StudentConfig, rng: random.Random
) -> list[list[int]]:
    """One epoch's batches of row indices under ``config.batching``: ``random`` chunks a shuffle; ``length``
    sorts each window of ``LENGTH_BUCKET_BATCHES`` batches of a shuffle by length before chunking it;
    ``query`` chunks each query's rows sorted by length. The batch order is shuffled in every mode."""
    order = list(train_idx)
    rng.shuffle(order)
    size = config.batch_size
    if config.batching == "query":
        by_query: dict[str, list[int]] = {}
        for i in order:
            by_query.setdefault(qids[i], []).append(i)
        groups = [sorted(rows, key=lambda i: lengths[i]) for rows in by_query.values()]
    elif config.batching == "length":
        window = size * LENGTH_BUCKET_BATCHES
        groups = [sorted(order[s : s + window], key=lambda i: lengths[i]) for s in range(0, len(order), window)]
    else:
        groups = [order]
    batches = [group[s : s + size] for group in groups for s in range(0, len(group), size)]
    rng.shuffle(batches)
    return batches


def margin_mse(student: Any, teacher: Any, qids: Sequence[str]) -> Any:
    """Margin-MSE over every same-query pair of a batch: the squared difference between the student's and the
    teacher's expected-grade gaps (zero when no two rows share a query)."""
    import torch

    codes = {q: n for n, q in enumerate(dict.fromkeys(qids))}
    group = torch.tensor([codes[q] for q in qids], device=student.device)
    same = (group[:, None] == group[None, :]).triu(diagonal=1)
    if not bool(same.any()):
        return student.sum() * 0.0
    gaps = (student[:, None] - student[None, :]) - (teacher[:, None] - teacher[None, :])
    return gaps[same].pow(2).mean()


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AVX-512 BF16 or AMX), read from /proc/cpuinfo's flags."""
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return False
    return any(flag in flags for flag in CPU_BF16_FLAGS)


def autocast(device: Any, precision: str) -> Any:
    """The autocast context for ``precision`` on ``device``: bf16 when asked, or for ``auto`` on a GPU or a CPU
    with native bf16; otherwise a no-op (fp32)."""
    import contextlib

    import torch

    use_bf16 = precision == "bf16" or (precision == "auto" and (device.type == "cuda" or cpu_has_native_bf16()))
    if not use_bf16:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def parent_checkpoint(config: StudentConfig) -> dict[str, Any] | None:
    """The ``init_from`` checkpoint's identity (path, weights sha256, recipe, base model, its own parent), after
    checking it is a checkpoint of the same recipe; None without ``init_from``."""
    if not config.init_from:
        return None
    from relabel.paths import file_sha256

    parent = read_meta(Path(config.init_from))
    if parent.get("recipe") != config.recipe:
        raise ValueError(f"--init-from {config.init_from} is a {parent.get('recipe')} checkpoint, not {config.recipe}")
    if config.recipe == "cross-encoder" and parent.get("objective") != config.objective:
        raise ValueError(f"--init-from {config.init_from} was trained with objective {parent.get('objective')!r}")
    weights = Path(config.init_from) / "model.safetensors"
    return {
        "path": str(Path(config.init_from).resolve()),
        "sha256": file_sha256(weights) if weights.is_file() else None,
        "recipe": parent["recipe"],
        "base_model": parent.get("base_model"),
        "parent": (parent.get("parent") or {}).get("sha256"),
    }


MAX_INFERENCE_BATCH = 4096
GPU_MEMORY_SHARE = 0.5  # of the free GPU memory, for one inference batch's activations


def activation_bytes_per_pair(config: Any, max_length: int, causal: bool = False) -> int:
    """A rough upper bound of one pair's activation memory at inference (fp32): per token, the widest layer's
    buffers (~16 x hidden: attention projections and the 4x feed-forward) plus one attention row per head, and for
    a causal LM the logits over the vocabulary at every position."""
    hidden = int(getattr(config, "hidden_size", 768))
    heads = int(getattr(config, "num_attention_heads", 12))
    vocab = int(getattr(config, "vocab_size", 0)) if causal else 0
    return 4 * max_length * (16 * hidden + heads * max_length + vocab)


def free_gpu_bytes(device: Any) -> int | None:
    """Free memory of a CUDA device (``torch.cuda.mem_get_info``); None for any other device."""
    if getattr(device, "type", str(device)) != "cuda":
        return None
    import torch

    free, _ = torch.cuda.mem_get_info(device)
    return int(free)


def inference_batch_size(
    default: int, override: int = 0, per_pair_bytes: int = 0, free_bytes: int | None = None
) -> int:
    """Pairs per inference batch: ``override`` when set (``RELABEL_STUDENT_BATCH_SIZE``, ``relabel label
    --batch-size``); on a GPU (``free_bytes`` known) half of its free memory over ``per_pair_bytes``, at least
    ``default`` and at most 4096; on the CPU the recipe's ``default`` (larger batches only pad more there)."""
    if override > 0:
        return override
    if free_bytes is None or per_pair_bytes <= 0:
        return default
    return int(min(MAX_INFERENCE_BATCH, max(default, free_bytes * GPU_MEMORY_SHARE // per_pair_bytes)))


def torch_device() -> Any:
    """The device encoders train and label on: the first CUDA GPU when torch sees one, else the CPU."""
    import torch

    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def fit_epochs(
    modules: Sequence[Any],
    optimizer: Any,
    batch_loss: Callable[[list[int]], Any],
    labeler: Labeler,
    texts: tuple[Sequence[str], Sequence[str]],
    grades: np.ndarray,
    split: tuple[list[int], list[int]],
    config: StudentConfig,
    qids: Sequence[str] = (),
    progress: bool | None = None,
) -> tuple[list[dict[str, Any]], float | None]:
    """The epoch loop shared by the encoder recipes: seeded ``training_batches`` (by query when ``qids`` are
        given), ``batch_loss`` per batch of row indices under ``autocast``, validation kappa with the teacher
        before training (epoch 0) and after each epoch, the best
        epoch's weights restored (the starting weights when no epoch beats them), and early stopping after
        ``patience`` epochs without improvement. ``progress`` shows a bar per epoch (running loss) and the validation
    kappa after it, on stderr (default: when stderr is a terminal). Returns (history, best validation kappa)."""
    train_idx, val_idx = split
    progress = sys.stderr.isatty() if progress is None else progress
    shuffler = random.Random(config.seed)
    lengths = [len(q) + len(d) for q, d in zip(texts[0], texts[1], strict=True)]
    qids = list(qids) or [str(i) for i in range(len(lengths))]
    device = next(modules[0].parameters()).device
    history: list[dict[str, Any]] = []
    best: tuple[float, list[dict[str, Any]]] | None = None
    if val_idx:
        for module in modules:
            module.eval()
        kappa, _ = validation_kappa(labeler, texts[0], texts[1], grades, train_idx, val_idx)
        history.append({"epoch": 0, "val_kappa_vs_teacher": kappa})
        best = (kappa, [{k: v.detach().clone() for k, v in m.state_dict().items()} for m in modules])
    stale_epochs = 0
    for epoch in range(config.epochs):
        for module in modules:
            module.train()
        losses = []
        started = time.perf_counter()
        batches = training_batches(train_idx, lengths, qids, config, shuffler)
        bar = tqdm(
            batches,
            desc=f"epoch {epoch + 1}/{config.epochs}",
            unit="batch",
            disable=not progress,
            leave=True,
            dynamic_ncols=True,
        )
        for batch in bar:
            with autocast(device, config.precision):
                loss = batch_loss(batch)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(float(loss.detach()))
            if len(losses) % PROGRESS_EVERY == 0:
                bar.set_postfix(loss=f"{np.mean(losses[-PROGRESS_EVERY:]):.4f}")
        for module in modules:
            module.eval()
        record: dict[str, Any] = {
            "epoch": epoch + 1,
            "train_loss": float(np.mean(losses)),
            "epoch_seconds": time.perf_counter() - started,
        }
        history.append(record)
        if not val_idx:
            continue
        kappa, _ = validation_kappa(labeler, texts[0], texts[1], grades, train_idx, val_idx)
        record["val_kappa_vs_teacher"] = kappa
        if progress:
            summary = f"epoch {epoch + 1}: loss {record['train_loss']:.4f}, validation kappa vs teacher {kappa:.3f}"
            tqdm.write(summary, file=sys.stderr)
        if best is None or kappa > best[0]:
            best = (kappa, [{k: v.detach().clone() for k, v in m.state_dict().items()} for m in modules])
            stale_epochs = 0
        else:
            stale_epochs += 1
            if stale_epochs >= config.patience:
                break
    if best is not None:
        for module, state in zip(modules, best[1], strict=True):
            module.load_state_dict(state)
    return history, None if best is None else best[0]


def fit_and_save(
    modules: Sequence[Any],
    optimizer: Any,
    batch_loss: Callable[[list[int]], Any],
    labeler: Labeler,
    texts: tuple[Sequence[str], Sequence[str]],
    grades: np.ndarray,
    split: tuple[list[int], list[int]],
    config: StudentConfig,
    tokenizer: Any,
    out_dir: Path,
    extra_meta: Callable[[], dict[str, Any]] = dict,
    qids: Sequence[str] = (),
) -> dict[str, Any]:
    """What every encoder recipe does with its pieces: ``fit_epochs``, the final thresholds, the model
    (``modules[0]``) and tokenizer saved in Hugging Face format, and ``relabel_student.json`` written with the
    training record plus ``extra_meta()`` (read after training, e.g. a trained head)."""
    started = time.perf_counter()
    history, best_kappa = fit_epochs(modules, optimizer, batch_loss, labeler, texts, grades, split, config, qids)
    labeler.thresholds = final_thresholds(labeler, texts[0], texts[1], grades, split[1], history)
    modules[0].save_pretrained(str(out_dir))
    tokenizer.save_pretrained(str(out_dir))
    return write_meta(
        out_dir,
        config,
        **extra_meta(),
        parent=parent_checkpoint(config),
        thresholds=labeler.thresholds,
        history=history,
        best_val_kappa_vs_teacher=best_kappa,
        best_epoch=best_epoch(history),
        train_rows=len(split[0]),
        val_rows=len(split[1]),
        train_seconds=time.perf_counter() - started,
    )


def write_meta(out_dir: Path, config: StudentConfig, **extra: Any) -> dict[str, Any]:
    """Write ``relabel_student.json`` (config, thresholds, history, counts) and return it."""
    meta = {**asdict(config), **extra}
    (out_dir / STUDENT_CONFIG_FILE).write_text(json.dumps(meta, indent=2))
    return meta


def read_meta(directory: Path) -> dict[str, Any]:
    """The ``relabel_student.json`` of a checkpoint folder, with a clear error when it is not one."""
    path = Path(directory) / STUDENT_CONFIG_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{directory} is not a relabel student checkpoint (no {STUDENT_CONFIG_FILE})")
    return json.loads(path.read_text())


def model_card(meta: dict[str, Any], teacher_id: str, data_hash: str) -> str:
    """README.md written next to the weights."""
    history = "\n".join(
        f"- {h.get('epoch', h.get('step'))}: " + ", ".join(f"{k} {v:.4f}" for k, v in h.items() if isinstance(v, float))
        for h in meta["history"]
    )
    if meta["recipe"] == "slm":
        recipe = (
            f"causal LM SFT with trl (prompt -> grade digit, completion-only loss, "
            f"{'LoRA r=' + str(meta['lora_r']) if meta['lora_r'] else 'full fine-tuning'}, "
            f"{meta['max_steps']} steps); expected grade from the four digit-token probabilities"
        )
    else:
        loss = "cross-entropy on the teacher grade distribution" if meta["objective"] == "soft" else "MSE"
        model = "bi-encoder with a cosine grade head" if meta["recipe"] == "bi-encoder" else "cross-encoder"
        recipe = (
            f"{model}, objective `{meta['objective']}` ({loss}), early stopping on validation kappa "
            f"with the teacher (patience {meta['patience']}; kept epoch {meta.get('best_epoch')}, "
            f"0 = the base weights)"
        )
    parent = meta.get("parent")
    lineage = (
        f"- parent checkpoint (fine-tuned from): `{parent['path']}` (weights sha256 `{parent['sha256']}`)\n"
        if parent
        else ""
    )
    return (
        f"# relabel student ({meta['recipe']})\n\n- base model: `{meta['base_model']}`\n{lineage}"
        f"- teacher: `{teacher_id}`\n"
        f"- training data sha256: `{data_hash}`\n- recipe: {recipe}; validation split grouped by query; "
        f"grade thresholds {[round(t, 4) for t in meta['thresholds']]} fitted to the teacher's grade shares\n"
        f"- train rows {meta['train_rows']}, validation rows {meta['val_rows']}, seed {meta['seed']}\n"
        f"- training seconds {meta['train_seconds']:.0f}\n\n## Training history\n{history}\n"
    )
