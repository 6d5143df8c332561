import os
from pathlib import Path

import pytest

# Tests compare float32 results with float64 references; keep XLA on its default
# (exact) CPU math and quiet.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


@pytest.fixture
def shared() -> Path:
    if not SHARED.is_dir():
        pytest.skip(f"{SHARED} is absent (it holds the shared corpora and GPT-2 ranks)")
    return SHARED
