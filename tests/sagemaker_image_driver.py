"""Runs inside a SageMaker image's interpreter and packages (tests/functional/test_sagemaker_images.py):
serves an unpacked model.tar.gz through a real serving stack of that image, in-process, and prints
one JSON result per request. Standard library plus what the image holds; no project code.

    python -I sagemaker_image_driver.py train OUT_DIR
    python -I sagemaker_image_driver.py toolkit|containers BASE_DIR REQUESTS_JSON [FIRST_ON_PATH]

toolkit: multi-model-server's own worker-side Service (mms.service) calling the sagemaker-inference
toolkit's DefaultHandlerService + Transformer, as MMS's Python worker does for each request batch;
the MMS wire answer is decoded as the Java frontend would. containers: sagemaker-containers'
Transformer and Flask Worker (the scikit-learn image's single-model server behind gunicorn), called
through Flask's WSGI test client. BASE_DIR/model is the unpacked model.tar.gz. FIRST_ON_PATH (a pip
--target directory, e.g. another sagemaker-inference release) shadows the venv's packages.
"""

from __future__ import annotations

import base64
import importlib
import json
import os
import struct
import sys
from pathlib import Path
from typing import Any


def train(out: Path) -> None:
    """A model saved by the image's own scikit-learn, and what that scikit-learn predicts."""
    import joblib
    import numpy as np
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x, y = load_iris(return_X_y=True)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)).fit(x, y)
    rows = x[[0, 60, 120, 7]]
    joblib.dump(model, out / "model.joblib")
    expected = {
        "rows": rows.tolist(),
        "predict": model.predict(rows).tolist(),
        "proba": model.predict_proba(rows).tolist(),
        "versions": {"python": "{}.{}".format(*sys.version_info[:2]), "scikit-learn": _version("scikit-learn"), "numpy": np.__version__},
    }
    (out / "expected.json").write_text(json.dumps(expected))


def _version(dist: str) -> str:
    from importlib.metadata import version

    return version(dist)


def _decode_mms(msg: bytes) -> dict[str, Any]:
    """One predict response of mms.protocol.otf_message_handler.create_predict_response."""
    pos = 0

    def take_int() -> int:
        nonlocal pos
        (value,) = struct.unpack_from("!i", msg, pos)
        pos += 4
        return int(value)

    def take_bytes() -> bytes:
        nonlocal pos
        n = take_int()
        out = msg[pos : pos + n]
        pos += n
        return bytes(out)

    batch_code = take_int()
    batch_message = take_bytes().decode()
    take_bytes()  # request id
    content_type = take_bytes().decode()
    status = take_int()
    phrase = take_bytes().decode()
    headers = {take_bytes().decode(): take_bytes().decode() for _ in range(take_int())}
    body = take_bytes()
    return {"batch_code": batch_code, "batch_message": batch_message, "status": status, "phrase": phrase,
            "content_type": headers.get("content-type", content_type), "body": body}


def serve_toolkit(base: Path, requests: list[dict[str, str]]) -> list[dict[str, Any]]:
    from mms.service import Service
    from sagemaker_inference.default_handler_service import DefaultHandlerService

    model_dir = base / "model"
    # The image puts the model's code/ on the worker's PYTHONPATH (DefaultHandlerService.initialize).
    sys.path.insert(0, str(model_dir / "code"))
    handler = DefaultHandlerService()
    service = Service("model", str(model_dir), None, handler.handle, None, 1)
    handler.initialize(service.context)  # what mms.model_loader does when it loads the model
    results = []
    for i, req in enumerate(requests):
        headers = [{"name": b"Content-Type", "value": req["content_type"].encode()}]
        if req.get("accept"):
            headers.append({"name": b"Accept", "value": req["accept"].encode()})
        batch = [{
            "requestId": f"req-{i}".encode(),
            "parameters": [{"name": "body", "contentType": req["content_type"], "value": base64.b64decode(req["body"])}],
            "headers": headers,
        }]
        out = _decode_mms(bytes(service.predict(batch)))
        results.append(out)
    return results


def serve_containers(base: Path, requests: list[dict[str, str]]) -> list[dict[str, Any]]:
    os.environ["SAGEMAKER_BASE_DIR"] = str(base)  # read at import: model_dir = BASE/model
    sys.path.insert(0, str(base / "model" / "code"))
    from sagemaker_containers import _transformer, _worker

    user = importlib.import_module("inference")
    # As sagemaker_sklearn_container.serving builds it from the user module.
    transformer = _transformer.Transformer(
        model_fn=user.model_fn, input_fn=user.input_fn, predict_fn=user.predict_fn, output_fn=user.output_fn
    )
    transformer.initialize()
    app = _worker.Worker(transform_fn=transformer.transform, module_name="inference")
    client = app.test_client()
    results = []
    for req in requests:
        headers = {"Content-Type": req["content_type"]}
        if req.get("accept"):
            headers["Accept"] = req["accept"]
        r = client.post("/invocations", data=base64.b64decode(req["body"]), headers=headers)
        results.append({"status": r.status_code, "content_type": r.headers.get("Content-Type", ""), "body": r.get_data()})
    return results


def main(argv: list[str]) -> int:
    mode = argv[1]
    if mode == "train":
        train(Path(argv[2]))
        return 0
    base, requests = Path(argv[2]), json.loads(Path(argv[3]).read_text())
    if len(argv) > 4:
        sys.path.insert(0, argv[4])
    stacks = {"toolkit": serve_toolkit, "containers": serve_containers}
    results = stacks[mode](base, requests)
    for r in results:
        r["body"] = base64.b64encode(r["body"]).decode()
    print("RESULTS " + json.dumps(results), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
