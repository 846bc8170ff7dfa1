"""The packaged model.tar.gz runs in the default SageMaker scikit-learn image's runtime: its Python
version, its scikit-learn / numpy / scipy and its two serving stacks (sagemaker-containers for a
single-model endpoint and batch transform, the sagemaker-inference toolkit on multi-model-server),
with JSON, JSON Lines and CSV in and out; bad input is a 4xx there, never a 500.

The image's runtime is a virtualenv on the image's Python version (pyenv's, or python3.X on PATH)
with the image's pins (sagemaker_jobs/images.py), built once and cached under .cache/ (or
$SAGEMAKER_IMAGE_VENVS). The serving runs in that interpreter with `python -I`: only the venv and
the unpacked model (its code/inference.py) are importable, never this repository.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest

from router.errors import ModelRejectedInput, model_message
from sagemaker_jobs.images import DEFAULT_IMAGES, INFERENCE_MIN_PYTHON, FrameworkImage
from sagemaker_jobs.package import build_package, unpack

REPO = Path(__file__).resolve().parents[2]
DRIVER = REPO / "tests" / "sagemaker_image_driver.py"
CACHE = Path(os.environ.get("SAGEMAKER_IMAGE_VENVS") or REPO / ".cache" / "sagemaker-images")
IMAGE = DEFAULT_IMAGES["sklearn"]
# sagemaker-containers pins flask==1.1.1; the image overrides it (uv override-dependencies), so it
# is installed without its declared dependencies, next to the image's own pins.
NO_DEPS = ("sagemaker-containers",)
# distutils for sagemaker-containers on Python 3.12 (setuptools' shim; the image's venv has it).
SUPPORT = {"setuptools": "80.9.0"}


def find_python(version: str) -> str | None:
    """pyenv's Python `version` (newest patch), else python`version` on PATH, if it runs."""
    versions = Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv") / "versions"
    candidates = sorted(str(p) for p in versions.glob(f"{version}.*/bin/python"))[::-1]
    on_path = shutil.which(f"python{version}")
    for python in [*candidates, *([on_path] if on_path else [])]:
        probe = subprocess.run([python, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"], capture_output=True, text=True)
        if probe.returncode == 0 and probe.stdout.strip() == version:
            return python
    return None


def pip(python: Path, *args: str) -> None:
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *args], check=True)


def image_python(image: FrameworkImage) -> Path:
    """The interpreter of a virtualenv that holds what the image holds (cached by its pins)."""
    pins = {**image.packages, **SUPPORT}
    target = CACHE / f"{image.sdk_framework}-{image.version}"
    stamp = target / ".installed"
    spec = json.dumps({"python": image.python, "pins": pins}, sort_keys=True)
    python = target / "bin" / "python"
    if stamp.is_file() and stamp.read_text() == spec:
        return python
    base = find_python(image.python)
    if base is None:
        message = f"Python {image.python} (the {image.sdk_framework} {image.version} image's) is not installed: pyenv install {image.python}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    shutil.rmtree(target, ignore_errors=True)
    subprocess.run([base, "-m", "venv", str(target)], check=True)
    pip(python, *(f"{name}=={version}" for name, version in pins.items() if name not in NO_DEPS))
    pip(python, "--no-deps", *(f"{name}=={pins[name]}" for name in NO_DEPS))
    # The image's own fix for Python 3.12 (docker/sklearn/1.9-0/Dockerfile: collections.Mapping).
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             check=True, capture_output=True, text=True).stdout.strip()
    mapping = Path(purelib) / "sagemaker_containers" / "_mapping.py"
    mapping.write_text(mapping.read_text().replace("collections.Mapping", "collections.abc.Mapping"))
    stamp.write_text(spec)
    return python


@pytest.fixture(scope="module")
def runtime(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict[str, Any]]:
    """(image interpreter, base dir holding model/ = the unpacked model.tar.gz, what the image's
    scikit-learn predicts for expected["rows"])."""
    python = image_python(IMAGE)
    work = tmp_path_factory.mktemp("image")
    run(python, "train", str(work))
    expected = json.loads((work / "expected.json").read_text())
    package = build_package(work / "model.joblib", work / "model.tar.gz", framework="sklearn")
    unpack(package.path, work / "base" / "model")
    return python, work / "base", expected


def run(python: Path, *args: str) -> list[dict[str, Any]]:
    env = {"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", "/tmp"), "SAGEMAKER_PROGRAM": "inference.py"}
    proc = subprocess.run([str(python), "-I", str(DRIVER), *args], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    for line in proc.stdout.splitlines():
        if line.startswith("RESULTS "):
            results: list[dict[str, Any]] = json.loads(line.removeprefix("RESULTS "))
            for r in results:
                r["body"] = base64.b64decode(r["body"])
            return results
    return []


def request(content_type: str, body: str | bytes, accept: str | None = "application/json") -> dict[str, str]:
    raw = body.encode() if isinstance(body, str) else body
    req = {"content_type": content_type, "body": base64.b64encode(raw).decode()}
    if accept is not None:
        req["accept"] = accept
    return req


# The image's sagemaker-inference (1.5.5) calls input_fn/predict_fn/output_fn without the request
# context; from 1.7 on it passes it (TorchServe's PyTorch toolkit builds on those releases).
CONTEXT_TOOLKIT = "1.10.1"


def newer_toolkit(python: Path) -> Path:
    target = CACHE / f"sagemaker-inference-{CONTEXT_TOOLKIT}"
    if not (target / ".installed").is_file():
        shutil.rmtree(target, ignore_errors=True)
        pip(python, "--no-deps", "--target", str(target), f"sagemaker-inference=={CONTEXT_TOOLKIT}")
        (target / ".installed").write_text(CONTEXT_TOOLKIT)
    return target


def serve(runtime: tuple[Path, Path, dict[str, Any]], stack: str, requests: list[dict[str, str]],
          base: Path | None = None) -> list[dict[str, Any]]:
    """`requests` served by `stack` in one process of the image's interpreter, from base/model."""
    python, default_base, _ = runtime
    base = base or default_base
    path = base.parent / f"requests-{stack}.json"
    path.write_text(json.dumps(requests))
    if stack == "toolkit-context":
        results = run(python, "toolkit", str(base), str(path), str(newer_toolkit(python)))
    else:
        results = run(python, stack, str(base), str(path))
    assert len(results) == len(requests)
    return results


STACKS = ["containers", "toolkit", "toolkit-context"]


def test_the_image_runtime_is_the_images() -> None:
    assert IMAGE.python_tuple >= INFERENCE_MIN_PYTHON
    python = image_python(IMAGE)
    out = subprocess.run(
        [str(python), "-I", "-c", "import sys, sklearn, numpy, scipy; print('%d.%d' % sys.version_info[:2], sklearn.__version__, numpy.__version__, scipy.__version__)"],
        check=True, capture_output=True, text=True,
    ).stdout.split()
    assert out == [IMAGE.python, IMAGE.packages["scikit-learn"], IMAGE.packages["numpy"], IMAGE.packages["scipy"]]


@pytest.mark.parametrize("stack", STACKS)
def test_json_jsonlines_and_csv_in_and_out(runtime: tuple[Path, Path, dict[str, Any]], stack: str) -> None:
    _, _, expected = runtime
    rows, predict, proba = expected["rows"], expected["predict"], expected["proba"]
    csv_rows = "".join(",".join(repr(v) for v in r) + "\n" for r in rows)
    jsonl_rows = "".join(json.dumps(r) + "\n" for r in rows)
    results = serve(runtime, stack, [
        request("application/json", json.dumps({"instances": rows})),
        request("application/json", json.dumps({"instances": rows, "output": "proba"}), "application/jsonlines"),
        request("application/jsonlines", jsonl_rows, "application/jsonlines"),
        request("text/csv", csv_rows, "text/csv"),
        request("text/csv; output=proba", csv_rows, "text/csv"),
        request("text/csv", csv_rows, None),  # no Accept: the server's default, JSON
    ])
    for r in results:
        assert r["status"] == 200, r
    assert json.loads(results[0]["body"]) == {"predictions": predict}
    assert results[0]["content_type"].startswith("application/json")
    assert [json.loads(line) for line in results[1]["body"].splitlines()] == proba
    assert [json.loads(line) for line in results[2]["body"].splitlines()] == predict
    assert results[2]["content_type"].startswith("application/jsonlines")
    assert results[3]["body"].decode().splitlines() == [str(p) for p in predict]
    assert results[3]["content_type"].startswith("text/csv")
    assert [[float(v) for v in line.split(",")] for line in results[4]["body"].decode().splitlines()] == proba
    assert json.loads(results[5]["body"]) == {"predictions": predict}


@pytest.mark.parametrize("stack", STACKS)
def test_a_model_saved_by_the_dev_stack_predicts_there_as_here(runtime: tuple[Path, Path, dict[str, Any]], stack: str,
                                                                tmp_path: Path) -> None:
    """The usual path: trained with this project's scikit-learn (1.9.x), packaged, served by the image's."""
    import joblib
    from sklearn.datasets import load_iris
    from sklearn.ensemble import RandomForestClassifier

    x, y = load_iris(return_X_y=True)
    model = RandomForestClassifier(n_estimators=20, random_state=0).fit(x, y)
    joblib.dump(model, tmp_path / "forest.joblib")
    package = build_package(tmp_path / "forest.joblib", tmp_path / "model.tar.gz", framework="sklearn")
    unpack(package.path, tmp_path / "base" / "model")
    rows = x[::15].tolist()
    proba, lines = serve(runtime, stack, [
        request("application/json", json.dumps({"instances": rows, "output": "proba"})),
        request("text/csv", "".join(",".join(repr(v) for v in r) + "\n" for r in rows), "application/jsonlines"),
    ], base=tmp_path / "base")
    assert proba["status"] == lines["status"] == 200
    assert json.loads(proba["body"]) == {"predictions": model.predict_proba(x[::15]).tolist()}
    assert [json.loads(line) for line in lines["body"].splitlines()] == model.predict(x[::15]).tolist()


BAD = [
    (request("application/json", '{"instances": [[1, 2, 3]]}'), 400, "invalid_input", "expected 4 features per record, got 3"),
    (request("application/json", '{"instances": [[1, 2, 3, NaN]]}'), 400, "invalid_input", "NaN is not a finite number"),
    (request("application/json", '{"instances": [[1, 2, 3, 4]], "bogus": 1}'), 400, "invalid_input", "unknown field(s) 'bogus'"),
    (request("application/json", '{"instances": [[1, 2, 3, 4]], "output": "logits"}'), 400, "invalid_input", "output must be one of"),
    (request("application/jsonlines", "[1, 2, 3, 4]\n\n[1, 2, 3, 4]\n"), 400, "invalid_input", "line 2 is empty"),
    (request("text/csv", "sepal,width,a,b\n", "text/csv"), 400, "invalid_input", "is not a number"),
    (request("application/x-npy", b"\x93NUMPY\x01\x00"), 415, "unsupported_media_type", "unsupported Content-Type"),
    (request("application/json", '{"instances": [[1, 2, 3, 4]]}', "image/png"), 415, "unsupported_media_type", "unsupported Accept"),
]


@pytest.mark.parametrize("stack", STACKS)
def test_bad_input_is_a_4xx_with_the_models_message(runtime: tuple[Path, Path, dict[str, Any]], stack: str) -> None:
    results = serve(runtime, stack, [req for req, *_ in BAD])
    for (_, status, code, text), r in zip(BAD, results, strict=True):
        assert r["status"] == status, (text, r)
        # The error document is the body's first line; the toolkit appends its traceback after it.
        first, _, rest = r["body"].decode().partition("\n")
        err = json.loads(first)["error"]
        assert err["code"] == code and text in err["message"], (text, err)
        if stack != "toolkit":  # 1.5.5 appends its traceback to the error's message
            assert rest == "" and "Traceback" not in r["body"].decode()
        # What the router makes of it (InvokeEndpoint's ModelError carries this body): the message only.
        rejected = ModelRejectedInput.from_endpoint("iris-prod", r["status"], r["body"])
        assert rejected.status == 422 and rejected.code == "model_error"
        assert model_message(r["body"]) == model_message(err["message"])
        assert "Traceback" not in rejected.message


def test_the_sdk_knows_every_default_image(tmp_path: Path) -> None:
    """image_uris.retrieve's own config (sagemaker-core's image_uri_config) has each default's
    version and py_version, in the regions the template deploys to."""
    wheels = CACHE / "sdk"
    if not list(wheels.glob("sagemaker_core-*.whl")):
        wheels.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check", "--no-deps",
                        "-d", str(wheels), "sagemaker-core"], check=True)
    wheel = sorted(wheels.glob("sagemaker_core-*.whl"))[-1]
    with zipfile.ZipFile(wheel) as z:
        for image in {id(i): i for i in DEFAULT_IMAGES.values()}.values():
            config = json.loads(z.read(f"sagemaker/core/image_uri_config/{image.sdk_framework}.json"))["inference"]
            versions = config["versions"]
            version = config.get("version_aliases", {}).get(image.version, image.version)
            assert version in versions, (image.sdk_framework, image.version, sorted(versions))
            assert image.py_version in versions[version]["py_versions"]
            assert {"us-east-1", "eu-west-1"} <= set(versions[version]["registries"])
