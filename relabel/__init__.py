"""relabel: build a fast, cheap relevance labeler from a company's own documents."""

import os

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

__version__ = "0.1.0"
