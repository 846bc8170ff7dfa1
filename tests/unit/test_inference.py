"""SageMaker inference contract (sagemaker_jobs/inference.py): loaders for sklearn, ONNX and
TorchScript, every content type in and out, the proba option, custom code/inference.py overrides,
and bad input raising InputError (a ValueError) with a message that says what is wrong."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pytest
from sklearn.linear_model import LinearRegression, LogisticRegression

from sagemaker_jobs import inference
from sagemaker_jobs.inference import InputError, Instances, OutputNotSupported, UnsupportedMediaType
from sagemaker_jobs.serve import ModelError, load_service
from tests.deep import require_torch, save_torchscript

X = np.array([[0.0, 0.1, 0.2], [0.1, 0.0, 0.3], [0.9, 1.0, 0.8], [1.0, 0.9, 1.1], [0.2, 0.2, 0.1], [0.8, 0.9, 1.0]])
Y = np.array([0, 0, 1, 1, 0, 1])
LOW, HIGH = [0.05, 0.05, 0.1], [0.95, 0.95, 1.0]


@pytest.fixture(scope="module")
def classifier() -> LogisticRegression:
    return LogisticRegression().fit(X, Y)


@pytest.fixture
def sklearn_dir(tmp_path: Path, classifier: LogisticRegression) -> Path:
    joblib.dump(classifier, tmp_path / "model.joblib")
    return tmp_path


def _onnx_dir(tmp_path: Path, model: Any, *, zipmap: bool) -> Path:
    from skl2onnx import to_onnx

    options = None if zipmap else {id(model): {"zipmap": False}}
    onx = to_onnx(model, X[:1].astype(np.float32), options=options)
    (tmp_path / "model.onnx").write_bytes(onx.SerializeToString())
    return tmp_path


def run(model_dir: Path, body: bytes | str, content_type: str, accept: str) -> tuple[bytes, str]:
    model = inference.model_fn(str(model_dir))
    data = inference.input_fn(body, content_type)
    return inference.output_fn(inference.predict_fn(data, model), accept)


# ---------------------------------------------------------------- loaders


def test_sklearn_model_predicts_classes(sklearn_dir: Path) -> None:
    body, ctype = run(sklearn_dir, json.dumps({"instances": [LOW, HIGH]}), "application/json", "application/json")
    assert ctype == "application/json"
    assert json.loads(body) == {"predictions": [0, 1]}


def test_sklearn_proba_rows_sum_to_one_in_class_order(sklearn_dir: Path, classifier: LogisticRegression) -> None:
    body, _ = run(sklearn_dir, json.dumps({"instances": [LOW, HIGH], "output": "proba"}), "application/json", "application/json")
    proba = json.loads(body)["predictions"]
    assert np.allclose(proba, classifier.predict_proba(np.array([LOW, HIGH])))
    assert proba[0][0] > 0.5 and proba[1][1] > 0.5


@pytest.mark.parametrize("zipmap", [True, False])
def test_onnx_classifier_label_and_proba_with_or_without_zipmap(tmp_path: Path, classifier: LogisticRegression, zipmap: bool) -> None:
    model_dir = _onnx_dir(tmp_path, classifier, zipmap=zipmap)
    model = inference.model_fn(str(model_dir))
    assert model.framework == "onnx" and model.n_features == 3
    assert inference.predict_fn(Instances([LOW, HIGH]), model) == [0, 1]
    proba = inference.predict_fn(Instances([LOW, HIGH], "proba"), model)
    assert np.allclose(proba, classifier.predict_proba(np.array([LOW, HIGH])), atol=1e-5)


def test_onnx_regressor_returns_one_number_per_record_and_has_no_proba(tmp_path: Path) -> None:
    reg = LinearRegression().fit(X, X[:, 0] * 2)
    model = inference.model_fn(str(_onnx_dir(tmp_path, reg, zipmap=True)))
    preds = inference.predict_fn(Instances([LOW, HIGH]), model)
    assert np.allclose(preds, [0.1, 1.9], atol=1e-4)
    with pytest.raises(OutputNotSupported, match="no class probabilities"):
        inference.predict_fn(Instances([LOW], "proba"), model)


def test_torchscript_model(tmp_path: Path) -> None:
    torch = require_torch()
    save_torchscript(torch.nn.Linear(3, 2), tmp_path / "model.pt")
    model = inference.model_fn(str(tmp_path))
    out = inference.predict_fn(Instances([LOW, HIGH]), model)
    assert np.asarray(out).shape == (2, 2)
    proba = inference.predict_fn(Instances([LOW, HIGH], "proba"), model)
    assert np.allclose(np.asarray(proba).sum(axis=1), 1.0)


def test_model_dir_without_a_model_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="found none"):
        inference.model_fn(str(tmp_path))


def test_model_dir_with_two_model_files_is_refused(sklearn_dir: Path) -> None:
    (sklearn_dir / "model.onnx").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match=r"model\.joblib and model\.onnx"):
        inference.model_fn(str(sklearn_dir))


def test_records_keyed_by_feature_name_follow_the_models_feature_order(tmp_path: Path) -> None:
    clf = LogisticRegression().fit(X, Y)
    # What fitting on a DataFrame with these columns leaves behind (pandas is not a dependency).
    clf.feature_names_in_ = np.array(["a", "b", "c"], dtype=object)
    joblib.dump(clf, tmp_path / "model.joblib")
    model = inference.model_fn(str(tmp_path))
    assert model.feature_names == ["a", "b", "c"]
    # Keys in another order than the columns: still HIGH then LOW, and no feature-name warning
    # (pytest turns warnings into errors).
    records = [{"c": 1.0, "b": 0.95, "a": 0.95}, {"a": 0.05, "b": 0.05, "c": 0.1}]
    assert inference.predict_fn(Instances(records), model) == [1, 0]
    assert len(inference.predict_fn(Instances(records, "proba"), model)) == 2
    with pytest.raises(InputError, match="record 0: missing c; unknown z"):
        inference.predict_fn(Instances([{"a": 1, "b": 2, "z": 3}]), model)


# ---------------------------------------------------------------- content types in


def test_json_bare_list_and_instances_object_decode_the_same() -> None:
    assert inference.decode(json.dumps([LOW, HIGH]), "application/json").records == [LOW, HIGH]
    assert inference.decode(json.dumps({"instances": [LOW, HIGH]}).encode(), "application/json; charset=utf-8").records == [LOW, HIGH]


def test_jsonlines_records_may_be_lists_or_objects() -> None:
    body = b'[1, 2, 3]\n{"a": 1}\n'
    assert inference.decode(body, "application/jsonlines").records == [[1, 2, 3], {"a": 1}]


def test_csv_rows_become_float_records() -> None:
    assert inference.decode(b"1,2,3\n4.5,5,6\n", "text/csv").records == [[1.0, 2.0, 3.0], [4.5, 5.0, 6.0]]
    # Without a trailing newline, with CRLF: the same records.
    assert inference.decode(b"1,2,3\r\n4.5,5,6", "text/csv").records == [[1.0, 2.0, 3.0], [4.5, 5.0, 6.0]]


def test_output_kind_json_field_beats_content_type_parameter_beats_default() -> None:
    assert inference.decode(b"1,2\n", "text/csv").output == "predict"
    assert inference.decode(b"1,2\n", "text/csv", default_output="proba").output == "proba"
    assert inference.decode(b"1,2\n", "text/csv; output=proba").output == "proba"
    assert inference.decode(b"[1,2]\n", "application/jsonlines; output=proba").output == "proba"
    body = json.dumps({"instances": [[1, 2]], "output": "predict"})
    assert inference.decode(body, "application/json; output=proba", default_output="proba").output == "predict"


def test_input_fn_reads_the_output_kind_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    # Batch transform sets the container's environment per job: that is the contract under test.
    monkeypatch.setenv(inference.OUTPUT_ENV, "proba")
    assert inference.input_fn(b"1,2\n", "text/csv").output == "proba"


# ---------------------------------------------------------------- content types out


def test_jsonlines_output_one_prediction_per_line_in_order() -> None:
    body, ctype = inference.output_fn([1, 0, 1], "application/jsonlines")
    assert ctype == "application/jsonlines" and body == b"1\n0\n1\n"
    body, _ = inference.output_fn([[0.25, 0.75], [1.0, 0.0]], "application/jsonlines")
    assert [json.loads(line) for line in body.splitlines()] == [[0.25, 0.75], [1.0, 0.0]]


def test_csv_output_scalars_and_probability_rows() -> None:
    assert inference.output_fn([1, 0], "text/csv") == (b"1\n0\n", "text/csv")
    assert inference.output_fn(np.array([[0.25, 0.75]]), "text/csv") == (b"0.25,0.75\n", "text/csv")
    assert inference.output_fn(["setosa", "virginica"], "text/csv") == (b"setosa\nvirginica\n", "text/csv")


def test_missing_or_wildcard_accept_answers_json() -> None:
    assert inference.output_fn([1], "*/*") == (b'{"predictions":[1]}', "application/json")
    assert inference.output_fn([1], "") == (b'{"predictions":[1]}', "application/json")


def test_csv_in_proba_jsonlines_out_end_to_end(sklearn_dir: Path) -> None:
    body, _ = run(sklearn_dir, "\n".join(",".join(map(str, r)) for r in [LOW, HIGH, LOW]), "text/csv; output=proba", "application/jsonlines")
    rows = [json.loads(line) for line in body.splitlines()]
    assert len(rows) == 3 and all(len(r) == 2 for r in rows)
    assert [int(np.argmax(r)) for r in rows] == [0, 1, 0]


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("body", "content_type", "message"),
    [
        (b"{not json", "application/json", "not valid JSON"),
        (b'{"rows": [[1]]}', "application/json", "unknown field"),
        (b'{"output": "proba"}', "application/json", "missing 'instances'"),
        (b'{"instances": 3}', "application/json", "instances must be a list"),
        (b"[]", "application/json", "no records"),
        (b'{"instances": [[1]], "output": "logits"}', "application/json", "output must be one of predict, proba"),
        (b"[1, NaN]", "application/json", "NaN is not a finite number"),
        (b"[1]\n\n[2]\n", "application/jsonlines", "line 2 is empty"),
        (b"[1]\n[2\n", "application/jsonlines", "line 2 is not valid JSON"),
        (b"a,b\n1,2\n", "text/csv", "line 1, column 1: 'a' is not a number"),
        (b"\xff\xfe", "text/csv", "not valid utf-8"),
    ],
)
def test_bad_bodies_raise_input_error_saying_what_is_wrong(body: bytes, content_type: str, message: str) -> None:
    with pytest.raises(InputError, match=message) as info:
        inference.input_fn(body, content_type)
    assert isinstance(info.value, ValueError) and info.value.status == 400


def test_unsupported_media_types_are_415() -> None:
    with pytest.raises(UnsupportedMediaType, match="unsupported Content-Type 'application/x-npy'") as info:
        inference.input_fn(b"", "application/x-npy")
    assert info.value.status == 415
    with pytest.raises(UnsupportedMediaType, match="unsupported Accept 'text/html'"):
        inference.output_fn([1], "text/html")


@pytest.mark.parametrize(
    ("records", "message"),
    [
        ([[1.0, 2.0]], "expected 3 features per record, got 2"),
        ([[1.0, 2.0, 3.0], [1.0, 2.0]], "record 1: expected 3 features per record, got 2"),
        ([[1.0, "x", 3.0]], "record 0: 'x' is not a number"),
        ([[1.0, "2", 3.0]], "record 0: '2' is not a number"),
        ([[1.0, True, 3.0]], "record 0: True is not a number"),
        ([7], "record 0: expected a list of numbers or an object, got int"),
        ([[1.0, float("inf"), 3.0]], "record 0: values must be finite"),
        ([{"a": 1.0}], "keyed by feature name, but this model has no feature names"),
    ],
)
def test_records_the_model_cannot_take_raise_input_error(sklearn_dir: Path, records: list[Any], message: str) -> None:
    model = inference.model_fn(str(sklearn_dir))
    with pytest.raises(InputError, match=message):
        inference.predict_fn(Instances(records), model)


# ---------------------------------------------------------------- code/inference.py overrides


def _write_code(model_dir: Path, source: str) -> None:
    (model_dir / "code").mkdir()
    (model_dir / "code" / "inference.py").write_text(textwrap.dedent(source))


def test_custom_code_overrides_only_the_functions_it_defines(sklearn_dir: Path) -> None:
    _write_code(
        sklearn_dir,
        """
        def output_fn(prediction, accept):
            return ",".join("class-%s" % p for p in prediction), "text/plain"
        """,
    )
    service = load_service(sklearn_dir)
    assert service.custom_code == sklearn_dir / "code" / "inference.py"
    # Default model_fn / input_fn / predict_fn, custom output_fn.
    assert service.invoke(json.dumps([LOW, HIGH]).encode(), "application/json", "application/json") == (b"class-0,class-1", "text/plain")


def test_custom_model_fn_and_predict_fn_replace_the_defaults(tmp_path: Path) -> None:
    _write_code(
        tmp_path,
        """
        def model_fn(model_dir):
            return {"offset": 10}

        def predict_fn(data, model):
            return [sum(r) + model["offset"] for r in data.records]
        """,
    )
    service = load_service(tmp_path)
    assert service.invoke(b"[1, 2]\n[3, 4]\n", "application/jsonlines", "application/jsonlines") == (b"13\n17\n", "application/jsonlines")


def test_custom_transform_fn_handles_the_whole_request(tmp_path: Path) -> None:
    _write_code(
        tmp_path,
        """
        def model_fn(model_dir):
            return "m"

        def transform_fn(model, body, content_type, accept):
            return body.upper()
        """,
    )
    service = load_service(tmp_path)
    assert service.invoke(b"abc", "text/plain", "text/plain") == (b"ABC", "text/plain")


def test_transform_fn_with_input_fn_is_refused_at_load(tmp_path: Path) -> None:
    _write_code(
        tmp_path,
        """
        def transform_fn(model, body, content_type, accept):
            return body

        def input_fn(body, content_type):
            return body
        """,
    )
    with pytest.raises(ValueError, match="transform_fn cannot be combined"):
        load_service(tmp_path)


def test_value_error_in_custom_input_fn_is_bad_input_other_errors_are_model_errors(sklearn_dir: Path) -> None:
    _write_code(
        sklearn_dir,
        """
        def input_fn(body, content_type):
            if body == b"bad":
                raise ValueError("nope")
            return [[1, 2, 3]]

        def predict_fn(data, model):
            raise KeyError("boom")
        """,
    )
    service = load_service(sklearn_dir)
    with pytest.raises(InputError, match="nope"):
        service.invoke(b"bad", "application/json", "application/json")
    with pytest.raises(ModelError, match="KeyError: 'boom'"):
        service.invoke(b"ok", "application/json", "application/json")


def test_a_packaged_copy_of_this_module_serves_like_the_defaults(sklearn_dir: Path) -> None:
    # package.py ships inference.py itself as code/inference.py: the copy must work on its own.
    (sklearn_dir / "code").mkdir()
    (sklearn_dir / "code" / "inference.py").write_bytes(Path(inference.__file__).read_bytes())
    service = load_service(sklearn_dir)
    assert service.custom_code is not None
    assert service.invoke(b"0.05,0.05,0.1\n0.95,0.95,1\n", "text/csv", "text/csv") == (b"0\n1\n", "text/csv")


class StatusContext:
    """The part of a model server's request context (MMS, TorchServe) the toolkit hands over."""

    def __init__(self) -> None:
        self.status: tuple[int, str] | None = None

    def set_response_status(self, code: int = 200, phrase: str = "", idx: int = 0) -> None:
        self.status = (code, phrase)


@pytest.mark.parametrize(
    ("body", "accept", "status", "code"),
    [
        (b'{"instances": [[1, 2]]}', "application/json", (400, "Bad Request"), "invalid_input"),  # predict_fn
        (b'{"instances": [[1, 2, 3]], "x": 1}', "application/json", (400, "Bad Request"), "invalid_input"),  # input_fn
        (b'{"instances": [[1, 2, 3]]}', "image/png", (415, "Unsupported Media Type"), "unsupported_media_type"),  # output_fn
    ],
)
def test_with_a_request_context_bad_input_sets_the_status_and_answers_the_error_alone(
    sklearn_dir: Path, body: bytes, accept: str, status: tuple[int, str], code: str
) -> None:
    model = inference.model_fn(str(sklearn_dir))
    context = StatusContext()
    data = inference.input_fn(body, "application/json", context)
    out, ctype = inference.output_fn(inference.predict_fn(data, model, context), accept, context)
    assert context.status == status
    assert ctype == "application/json" and json.loads(out)["error"]["code"] == code


def test_without_a_context_or_flask_request_bad_input_raises() -> None:
    with pytest.raises(InputError, match="unknown field"):
        inference.input_fn(b'{"instances": [[1]], "x": 1}', "application/json")
