"""Code location for the browser tests: the real definitions over a test folder (``RELABEL_TEST_ROOT`` holding
``corpus/``, ``judgments/`` and ``data/``) with the scripted LLM; the sensors start stopped, to be turned on
in the UI."""

import os
from pathlib import Path

import dagster as dg

from relabel_assets.definitions import build_definitions
from tests.conftest import scripted_resources

ROOT = Path(os.environ["RELABEL_TEST_ROOT"])

defs = build_definitions(
    scripted_resources(ROOT, ROOT / "corpus", ROOT / "judgments", student_epochs=1),
    sensor_status=dg.DefaultSensorStatus.STOPPED,
)
