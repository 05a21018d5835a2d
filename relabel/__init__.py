"""relabel: build a fast, cheap relevance labeler from a company's own documents."""

import os

# litellm reads its price table from the package, never from the network (the one place this is set: every
# import of relabel, its assets, CLI and benchmarks passes through here before litellm is imported)
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

__version__ = "0.1.0"
