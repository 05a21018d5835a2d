"""Code location for the daemon + webserver test: the real definitions over a test folder
(``RELABEL_TEST_ROOT``) with the scripted LLM, loaded by ``dagster-daemon`` and ``dagster-webserver``."""

import os
from pathlib import Path

from dagster_duckdb import DuckDBResource

from relabel_assets.definitions import build_definitions
from resources.llm import LLMGateway
from resources.model_store import ModelStore
from resources.settings import PipelineSettings
from tests import scripted_llm

scripted_llm.register()
ROOT = Path(os.environ["RELABEL_TEST_ROOT"])
BASELINE = Path(os.environ["RELABEL_TEST_BASELINE"])

defs = build_definitions(
    {
        "duckdb": DuckDBResource(database=str(ROOT / "data" / "relabel.duckdb")),
        "llm": LLMGateway(model="scripted/overlap", use_logprobs=False),
        "model_store": ModelStore(root=str(ROOT / "data" / "artifacts")),
        "settings": PipelineSettings(
            data_dir=str(ROOT / "data"),
            corpus_dir=str(BASELINE / "corpus"),
            inbox_dir=str(ROOT / "inbox"),
            judgments=str(BASELINE / "judgments"),
            queries_per_doc=2,
        ),
    }
)
