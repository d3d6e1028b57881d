"""Real QBO exchanges recorded by minimul/qbo_api's VCR cassettes, read where they are kept beside the project
(`../shared/qbo/recordings`, or the folder $QBFLOW_QBO_RECORDINGS names). They are not part of the repository:
tests that compare with them skip themselves without them (`cassette` raises pytest's skip)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

RECORDINGS_ENV = "QBFLOW_QBO_RECORDINGS"
REPO_ROOT = Path(__file__).resolve().parents[2]
RECORDINGS = Path(os.environ.get(RECORDINGS_ENV) or REPO_ROOT.parent / "shared" / "qbo" / "recordings")


def cassette(name: str) -> list[dict[str, Any]]:
    """The interactions of one cassette (`"reports/gl.yml"`); skips the test when the recordings are absent."""
    path = RECORDINGS / name
    if not path.is_file():
        pytest.skip(f"the recorded QBO exchange {name} is not at {RECORDINGS} (recordings are not part of the "
                    f"repository; set {RECORDINGS_ENV} to the folder holding minimul/qbo_api's cassettes)")
    import yaml

    return yaml.safe_load(path.read_text(encoding="utf-8"))["http_interactions"]


def answer(name: str, index: int = 0) -> dict[str, Any]:
    """One recorded exchange as {"request": its URI, "recorded_at", "response": the answer's JSON body}."""
    interaction = cassette(name)[index]
    return {"request": interaction["request"]["uri"], "recorded_at": interaction["recorded_at"],
            "response": json.loads(interaction["response"]["body"]["string"])}
