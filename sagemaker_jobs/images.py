"""The official SageMaker images `models deploy` uses by default, and what each one holds.

One table for the code (deploy.py picks the image from it), the CI test that runs the packaged
code/inference.py under the image's interpreter and packages, and docs/operations.md (a test checks
the docs' table against this one). Facts come from the SageMaker SDK's image_uri_config
(sklearn.json, pytorch.json: framework version and py_version) and from the images' own build
files in the AWS Deep Learning Containers repository (docker/sklearn/1.9-0: Python 3.12 on
Amazon Linux 2023 with the pins below; pytorch/inference/docker/2.6/py3: Python 3.12.8,
torch 2.6.0, TorchServe with sagemaker-pytorch-inference).

Why these: code/inference.py needs Python >= 3.10 (`dataclass(slots=)`, `zip(strict=)`), which
rules out the sklearn `1.2-1` image (Python 3.9, scikit-learn 1.2.1); `1.9-0` is the only sklearn
image whose scikit-learn (1.9.0) loads models saved by this project's scikit-learn (1.9.x).
"""

from __future__ import annotations

from dataclasses import dataclass, field

# code/inference.py's floor; every default image must meet it.
INFERENCE_MIN_PYTHON = (3, 10)


@dataclass(frozen=True)
class FrameworkImage:
    """One SageMaker framework image, as `sagemaker.image_uris.retrieve` names it and as built."""

    sdk_framework: str  # image_uris framework: "sklearn" | "pytorch"
    version: str  # image_uris version: "1.9-0"
    py_version: str  # image_uris py_version: "py3" | "py312"
    python: str  # the image's interpreter, major.minor
    packages: dict[str, str] = field(default_factory=dict, hash=False)  # exact pins in the image
    serving: str = ""  # the stack that loads code/inference.py on a single-model endpoint

    @property
    def python_tuple(self) -> tuple[int, int]:
        major, minor = self.python.split(".")[:2]
        return int(major), int(minor)


SKLEARN_1_9 = FrameworkImage(
    sdk_framework="sklearn",
    version="1.9-0",
    py_version="py3",
    python="3.12",
    packages={
        "scikit-learn": "1.9.0",
        "numpy": "2.5.1",
        "scipy": "1.18.0",
        "sagemaker-containers": "2.8.6.post2",
        "sagemaker-inference": "1.5.5",
        "multi-model-server": "1.1.2",
        "flask": "3.1.3",
        "werkzeug": "3.1.8",
        "protobuf": "3.20.2",
        "boto3": "1.43.46",
    },
    serving="sagemaker-containers (gunicorn + Flask); multi-model endpoints: sagemaker-inference on multi-model-server",
)

PYTORCH_2_6 = FrameworkImage(
    sdk_framework="pytorch",
    version="2.6.0",
    py_version="py312",
    python="3.12",
    packages={"torch": "2.6.0"},
    serving="TorchServe with sagemaker-pytorch-inference (on sagemaker-inference)",
)

# Router framework -> default image. ONNX has no official image: it runs in the scikit-learn
# image, with onnxruntime installed from code/requirements.txt (package.py).
DEFAULT_IMAGES: dict[str, FrameworkImage] = {"sklearn": SKLEARN_1_9, "onnx": SKLEARN_1_9, "pytorch": PYTORCH_2_6}
