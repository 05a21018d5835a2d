"""Code location for the sharded Dask test: the real definitions with the scripted LLM, every setting (data
folder, corpus, judgments, shards, executor, Dask scheduler) read from ``RELABEL_*`` variables, so the Dask
workers, which import this module to run a step, build the same definitions as the test."""

import os
from pathlib import Path

from dagster_duckdb import DuckDBResource

from relabel_assets.definitions import build_definitions
from resources.llm import LLMGateway
from resources.model_store import ModelStore
from resources.settings import PipelineSettings
from tests import scripted_llm

scripted_llm.register()
DATA = Path(os.environ["RELABEL_DATA_DIR"])

defs = build_definitions(
    {
        "duckdb": DuckDBResource(database=str(DATA / "relabel.duckdb")),
        "llm": LLMGateway(model="scripted/overlap", use_logprobs=False),
        "model_store": ModelStore(root=str(DATA / "artifacts")),
        "settings": PipelineSettings.from_env(),
    }
)
