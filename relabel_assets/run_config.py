"""Run-time choices shown in the launchpad when an asset is materialized on demand. Every field is optional:
left empty (``None``) it takes the setting the code location started with (``RELABEL_*`` environment variables,
see ``resources/settings.py`` and ``resources/llm.py``), so the defaults live in one place."""

import dagster as dg
from pydantic import Field


class TeacherLabelsConfig(dg.Config):
    """Which teacher grades the pairs. Answers are cached by model, prompt version, rendered pair and sampling
    parameters: another model or prompt asks the LLM again, going back to one already used costs nothing."""

    model: str | None = Field(
        default=None,
        description="litellm model string of the teacher (gpt-4o, openai/<name>, relabel-local/<alias>, ...); "
        "given, it is the only teacher and recorded labelings are not used. Empty: RELABEL_LLM_MODEL "
        "plus the RELABEL_LLM_ENSEMBLE members (or RELABEL_TEACHER_RUNS when set).",
    )
    prompt_id: str | None = Field(
        default=None,
        description="grading prompt, a file of relabel/llm/prompt_files (grade_nist, grade_one_digit). "
        "Empty: RELABEL_TEACHER_PROMPT_ID.",
    )
    samples: int | None = Field(
        default=None,
        description="answers per model, combined by vote (more than 1 samples at the gateway's temperature). "
        "Empty: RELABEL_LLM_SAMPLES.",
    )


class StudentCheckpointConfig(dg.Config):
    """How the student is trained."""

    recipe: str | None = Field(
        default=None,
        description="bi-encoder, cross-encoder or slm. Empty: RELABEL_STUDENT_RECIPE.",
    )
    epochs: int | None = Field(
        default=None, description="training epochs of the encoders. Empty: RELABEL_STUDENT_EPOCHS."
    )
    base_model: str | None = Field(
        default=None,
        description="local Hugging Face folder, an encoder alias (minilm-l6, mpnet-base) or, for the slm, a "
        ".gguf path or alias to start from. Empty: "
        "RELABEL_STUDENT_BASE_MODEL, else the recipe's packaged default.",
    )
    init_from: str | None = Field(
        default=None,
        description="a student checkpoint folder of the same recipe to continue from ('' for none). "
        "Empty: RELABEL_STUDENT_INIT_FROM.",
    )


class SyntheticQueriesConfig(dg.Config):
    """How many queries the LLM writes."""

    queries_per_doc: int | None = Field(
        default=None, description="queries written per seed document. Empty: RELABEL_QUERIES_PER_DOC."
    )


def positive(name: str, value: int | None) -> int | None:
    """``value`` unchanged when it is ``None`` or at least 1; a clear error otherwise."""
    if value is not None and value < 1:
        raise dg.Failure(f"{name} must be at least 1, got {value}")
    return value
