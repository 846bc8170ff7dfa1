"""The default SageMaker images: one table in sagemaker_jobs/images.py, the same in
docs/operations.md, and each image able to run code/inference.py."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from sagemaker_jobs.images import DEFAULT_IMAGES, INFERENCE_MIN_PYTHON

DOC = Path(__file__).resolve().parents[2] / "docs" / "operations.md"


def doc_rows() -> dict[str, list[str]]:
    rows = {}
    for line in DOC.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and cells and cells[0] in DEFAULT_IMAGES:
            rows[cells[0]] = cells
    return rows


@pytest.mark.parametrize("framework", sorted(DEFAULT_IMAGES))
def test_the_docs_table_says_what_the_code_deploys(framework: str) -> None:
    image = DEFAULT_IMAGES[framework]
    row = doc_rows().get(framework)
    assert row is not None, f"docs/operations.md has no image row for {framework}"
    _, name, python, sklearn, numpy, serving = row
    assert re.search(rf"`{re.escape(image.version)}`", name), name
    assert python == image.python
    assert sklearn == image.packages.get("scikit-learn", "-")
    assert numpy == image.packages.get("numpy", "-")
    assert serving.startswith(("as ", image.serving.split(" ")[0]))


@pytest.mark.parametrize("framework", sorted(DEFAULT_IMAGES))
def test_every_default_image_runs_the_inference_code(framework: str) -> None:
    assert DEFAULT_IMAGES[framework].python_tuple >= INFERENCE_MIN_PYTHON
