"""SageMaker deployment: the pure plan, its execution against moto (botocore validates every
parameter), a re-deploy that updates the endpoint instead of failing, and the dry-run text.

moto 5 has no UpdateEndpoint, so the re-deploy test wraps the moto client: every call goes to
moto except update_endpoint, which a Stubber-backed client validates and records."""

from __future__ import annotations

import importlib.util
import json
import re
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from moto import mock_aws

from router.config import ModelSpec, RouterConfig
from router.errors import ConfigError
from router.sagemaker_names import sagemaker_model_name
from sagemaker_jobs.deploy import (
    ApiCall,
    DeployError,
    deploy,
    describe_plan,
    endpoint_config_name,
    execute,
    plan_deployment,
    resolve_image_uri,
)

# One session for the module: it caches the (large) SageMaker service models, so each client
# is cheap. Created after `import moto`, so moto's handler is part of it.
SESSION = boto3.session.Session(region_name="us-east-1")
NAME_RE = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")
ROLE = "arn:aws:iam::123456789012:role/RouterSageMaker"
IMAGE = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.9-0-cpu-py3"
DATA = "s3://artifacts/iris/model.tar.gz"
SHA1 = "1" * 64
SHA2 = "2" * 64


def make_config(*, role: str | None = ROLE, sha: str = SHA1, instance_type: str = "ml.m5.large", image_uri: str | None = None) -> RouterConfig:
    model: dict[str, Any] = {
        "name": "iris",
        "framework": "sklearn",
        "artifact": "s3://artifacts/iris.joblib",
        "sha256": sha,
        "endpoint": {"name": "iris-prod", "instance_type": instance_type, "instance_count": 1},
    }
    if image_uri:
        model["image_uri"] = image_uri
    batch_only = {"name": "bulk", "framework": "pytorch", "artifact": "s3://artifacts/bulk.tar.gz", "sha256": SHA2}
    return RouterConfig.model_validate(
        {"sagemaker": {"execution_role_arn": role, "region": "us-east-1"}, "models": [model, batch_only]}
    )


def iris(config: RouterConfig) -> ModelSpec:
    spec = config.model("iris")
    assert spec is not None
    return spec


@pytest.fixture
def sm() -> Iterator[Any]:
    with mock_aws():
        yield SESSION.client("sagemaker")


class MotoWithUpdateEndpoint:
    """The moto client, plus UpdateEndpoint (absent from moto 5): validated by botocore through a
    Stubber, recorded, and applied to nothing else."""

    def __init__(self, moto_client: Any) -> None:
        self._moto = moto_client
        self.calls: list[str] = []
        self.updates: list[dict[str, Any]] = []

    def __getattr__(self, name: str) -> Any:
        self.calls.append(name)
        return getattr(self._moto, name)

    def update_endpoint(self, **params: Any) -> dict[str, Any]:
        self.calls.append("update_endpoint")
        checker = SESSION.client("sagemaker")
        arn = f"arn:aws:sagemaker:us-east-1:123456789012:endpoint/{params['EndpointName']}"
        with Stubber(checker) as stub:
            stub.add_response("update_endpoint", {"EndpointArn": arn}, params)
            result = dict(checker.update_endpoint(**params))
        self.updates.append(params)
        return result


# ---------------------------------------------------------------- the plan (pure)


def test_first_deploy_plans_model_config_and_endpoint() -> None:
    config = make_config()
    plan = plan_deployment(config, iris(config), image_uri=IMAGE, model_data_url=DATA, existing=None)

    assert [c.operation for c in plan] == ["CreateModel", "CreateEndpointConfig", "CreateEndpoint"]
    model, endpoint_config, endpoint = (c.params for c in plan)
    assert model["ModelName"] == sagemaker_model_name(iris(config))
    assert model["ExecutionRoleArn"] == ROLE
    assert model["PrimaryContainer"]["Image"] == IMAGE
    assert model["PrimaryContainer"]["ModelDataUrl"] == DATA
    assert model["PrimaryContainer"]["Environment"]["SAGEMAKER_PROGRAM"] == "inference.py"
    [variant] = endpoint_config["ProductionVariants"]
    assert (variant["ModelName"], variant["InstanceType"], variant["InitialInstanceCount"]) == (model["ModelName"], "ml.m5.large", 1)
    assert endpoint == {
        "EndpointName": "iris-prod",
        "EndpointConfigName": endpoint_config["EndpointConfigName"],
        "Tags": endpoint["Tags"],
    }
    for call in plan:
        for key in ("ModelName", "EndpointConfigName", "EndpointName"):
            if key in call.params:
                assert NAME_RE.match(call.params[key])


def test_plan_is_deterministic_and_versioned() -> None:
    config = make_config()
    again = plan_deployment(config, iris(config), image_uri=IMAGE, model_data_url=DATA, existing=None)
    assert again == plan_deployment(config, iris(config), image_uri=IMAGE, model_data_url=DATA, existing=None)

    v2 = make_config(sha=SHA2)
    plan2 = plan_deployment(v2, iris(v2), image_uri=IMAGE, model_data_url=DATA, existing=None)
    assert plan2[0].params["ModelName"] != again[0].params["ModelName"]
    assert plan2[1].params["EndpointConfigName"] != again[1].params["EndpointConfigName"]

    bigger = make_config(instance_type="ml.m5.xlarge")
    plan3 = plan_deployment(bigger, iris(bigger), image_uri=IMAGE, model_data_url=DATA, existing=None)
    assert plan3[0].params["ModelName"] == again[0].params["ModelName"]  # same artifact, same Model
    assert plan3[1].params["EndpointConfigName"] != again[1].params["EndpointConfigName"]


def test_endpoint_config_names_fit_sagemakers_limit() -> None:
    name = endpoint_config_name("e" * 63, "m", {"Image": IMAGE}, {"InstanceType": "ml.m5.large"})
    assert len(name) <= 63
    assert NAME_RE.match(name)


def test_missing_execution_role_is_a_clear_config_error() -> None:
    config = make_config(role=None)
    with pytest.raises(ConfigError) as info:
        plan_deployment(config, iris(config), image_uri=IMAGE, model_data_url=DATA, existing=None)
    assert "sagemaker.execution_role_arn" in str(info.value)


def test_model_without_endpoint_gets_only_its_sagemaker_model() -> None:
    config = make_config()
    bulk = config.model("bulk")
    assert bulk is not None
    plan = plan_deployment(config, bulk, image_uri=IMAGE, model_data_url="s3://artifacts/bulk/model.tar.gz", existing=None)
    assert [c.operation for c in plan] == ["CreateModel"]


@pytest.mark.parametrize("status", ["Creating", "Updating", "Failed"])
def test_endpoint_mid_change_or_failed_is_not_updated(status: str) -> None:
    config = make_config()
    existing = {"EndpointName": "iris-prod", "EndpointConfigName": "old", "EndpointStatus": status}
    with pytest.raises(DeployError, match=status):
        plan_deployment(config, iris(config), image_uri=IMAGE, model_data_url=DATA, existing=existing)


def test_api_call_knows_its_boto3_method() -> None:
    assert ApiCall("sagemaker", "CreateEndpointConfig").method == "create_endpoint_config"
    assert ApiCall("sagemaker", "UpdateEndpoint").method == "update_endpoint"


# ---------------------------------------------------------------- against moto


def test_deploy_creates_model_config_and_endpoint_in_sagemaker(sm: Any) -> None:
    config = make_config()
    text = deploy(config, iris(config), sm, image_uri=IMAGE, model_data_url=DATA)

    model_name = sagemaker_model_name(iris(config))
    described = sm.describe_model(ModelName=model_name)
    assert described["ExecutionRoleArn"] == ROLE
    assert described["PrimaryContainer"]["Image"] == IMAGE
    endpoint = sm.describe_endpoint(EndpointName="iris-prod")
    assert endpoint["EndpointStatus"] == "InService"
    endpoint_config = sm.describe_endpoint_config(EndpointConfigName=endpoint["EndpointConfigName"])
    assert endpoint_config["ProductionVariants"][0]["ModelName"] == model_name
    assert "CreateEndpoint" in text


def test_redeploy_of_a_new_version_updates_the_endpoint(sm: Any) -> None:
    v1 = make_config()
    deploy(v1, iris(v1), sm, image_uri=IMAGE, model_data_url=DATA)
    first_config = sm.describe_endpoint(EndpointName="iris-prod")["EndpointConfigName"]

    v2 = make_config(sha=SHA2)
    client = MotoWithUpdateEndpoint(sm)
    text = deploy(v2, iris(v2), client, image_uri=IMAGE, model_data_url="s3://artifacts/iris/v2/model.tar.gz")

    assert "create_endpoint" not in client.calls
    [update] = client.updates
    assert update["EndpointName"] == "iris-prod"
    assert update["EndpointConfigName"] != first_config
    new_config = sm.describe_endpoint_config(EndpointConfigName=update["EndpointConfigName"])
    assert new_config["ProductionVariants"][0]["ModelName"] == sagemaker_model_name(iris(v2))
    assert sm.describe_model(ModelName=sagemaker_model_name(iris(v2)))["PrimaryContainer"]["ModelDataUrl"].endswith("v2/model.tar.gz")
    assert "UpdateEndpoint" in text


def test_redeploy_of_the_same_version_does_nothing(sm: Any) -> None:
    config = make_config()
    deploy(config, iris(config), sm, image_uri=IMAGE, model_data_url=DATA)
    client = MotoWithUpdateEndpoint(sm)
    text = deploy(config, iris(config), client, image_uri=IMAGE, model_data_url=DATA)
    assert client.calls == ["describe_endpoint"]
    assert text.startswith("Nothing to do")


def test_dry_run_prints_the_exact_calls_and_changes_nothing(sm: Any) -> None:
    config = make_config()
    text = deploy(config, iris(config), sm, image_uri=IMAGE, model_data_url=DATA, dry_run=True)

    assert sm.list_models()["Models"] == []
    assert sm.list_endpoints()["Endpoints"] == []
    assert "Dry run" in text
    for op in ("1. sagemaker CreateModel", "2. sagemaker CreateEndpointConfig", "3. sagemaker CreateEndpoint"):
        assert op in text
    assert ROLE in text and IMAGE in text and sagemaker_model_name(iris(config)) in text


def test_describe_plan_shows_parameters_as_json() -> None:
    plan = [ApiCall("sagemaker", "UpdateEndpoint", {"EndpointName": "e", "EndpointConfigName": "c"})]
    text = describe_plan(plan)
    body = text.split("\n", 2)[2]
    assert json.loads(body) == {"EndpointName": "e", "EndpointConfigName": "c"}
    assert describe_plan([]).startswith("Nothing to do")


def test_execute_tolerates_an_existing_model_and_reports_other_errors() -> None:
    client = SESSION.client("sagemaker")
    config = make_config()
    plan = plan_deployment(config, iris(config), image_uri=IMAGE, model_data_url=DATA, existing=None)
    with Stubber(client) as stub:
        stub.add_client_error("create_model", "ValidationException", "Cannot create already existing model \"arn:...\".")
        stub.add_client_error("create_endpoint_config", "AccessDeniedException", "not allowed to iam:PassRole")
        with pytest.raises(DeployError, match="CreateEndpointConfig failed.*PassRole"):
            execute(plan, client)
        stub.assert_no_pending_responses()


# ---------------------------------------------------------------- images


def test_config_image_wins_and_a_conflicting_flag_is_an_error(sm: Any) -> None:
    config = make_config(image_uri=IMAGE)
    deploy(config, iris(config), sm, model_data_url=DATA)  # no --image-uri, no SDK needed
    assert sm.describe_model(ModelName=sagemaker_model_name(iris(config)))["PrimaryContainer"]["Image"] == IMAGE
    with pytest.raises(DeployError, match="remove one"):
        deploy(config, iris(config), sm, image_uri="elsewhere/image:1", model_data_url=DATA)


@pytest.mark.skipif(importlib.util.find_spec("sagemaker") is not None, reason="the deploy extra is installed")
def test_without_the_sdk_image_resolution_says_what_to_install(sm: Any) -> None:
    with pytest.raises(DeployError, match=re.escape("lambda-sagemaker-router[deploy]")):
        resolve_image_uri("sklearn", "us-east-1")
    config = make_config()
    with pytest.raises(DeployError, match="--image-uri"):
        deploy(config, iris(config), sm, model_data_url=DATA)
    assert sm.list_models()["Models"] == []


def test_custom_container_framework_needs_an_image() -> None:
    with pytest.raises(DeployError, match="image_uri"):
        resolve_image_uri("container", "us-east-1")


# ---------------------------------------------------------------- asynchronous inference


def async_config(**async_inference: Any) -> RouterConfig:
    model = {
        "name": "bulk", "framework": "pytorch", "artifact": "s3://artifacts/bulk.tar.gz", "sha256": SHA2,
        "async_inference": {"instance_type": "ml.m5.xlarge", "min_instances": 0, "max_instances": 3,
                            "max_concurrent_invocations_per_instance": 4, **async_inference},
    }
    return RouterConfig.model_validate(
        {"sagemaker": {"execution_role_arn": ROLE, "region": "us-east-1"}, "storage": {"jobs": "s3://router-jobs/jobs"}, "models": [model]}
    )


def test_deploy_creates_the_async_endpoint_then_registers_scale_to_zero(sm: Any) -> None:
    config = async_config(success_topic="arn:aws:sns:us-east-1:123456789012:ok", error_topic="arn:aws:sns:us-east-1:123456789012:bad")
    bulk = config.model("bulk")
    assert bulk is not None and bulk.async_endpoint_name == "router-bulk-async"
    scaling = SESSION.client("application-autoscaling")
    text = deploy(config, bulk, sm, image_uri=IMAGE, model_data_url=DATA, autoscaling_client=scaling)
    endpoint = sm.describe_endpoint(EndpointName="router-bulk-async")
    described = sm.describe_endpoint_config(EndpointConfigName=endpoint["EndpointConfigName"])
    assert described["AsyncInferenceConfig"] == {
        "ClientConfig": {"MaxConcurrentInvocationsPerInstance": 4},
        "OutputConfig": {
            "S3OutputPath": "s3://router-jobs/jobs/async-output/",
            "S3FailurePath": "s3://router-jobs/jobs/async-failure/",
            "NotificationConfig": {"SuccessTopic": "arn:aws:sns:us-east-1:123456789012:ok", "ErrorTopic": "arn:aws:sns:us-east-1:123456789012:bad"},
        },
    }
    assert described["ProductionVariants"][0]["InstanceType"] == "ml.m5.xlarge"
    assert "RegisterScalableTarget" not in text  # a new endpoint: scaling once it is InService

    again = deploy(config, bulk, sm, image_uri=IMAGE, model_data_url=DATA, autoscaling_client=scaling)
    assert "CreateEndpoint" not in again and "RegisterScalableTarget" in again
    [target] = scaling.describe_scalable_targets(ServiceNamespace="sagemaker")["ScalableTargets"]
    assert target["ResourceId"] == "endpoint/router-bulk-async/variant/AllTraffic"
    assert (target["MinCapacity"], target["MaxCapacity"]) == (0, 3)
    [policy] = scaling.describe_scaling_policies(ServiceNamespace="sagemaker")["ScalingPolicies"]
    assert policy["TargetTrackingScalingPolicyConfiguration"]["ScaleInCooldown"] == 600


def test_async_endpoint_without_s3_output_is_refused() -> None:
    config = RouterConfig.model_validate(
        {"sagemaker": {"execution_role_arn": ROLE}, "models": [
            {"name": "bulk", "framework": "pytorch", "artifact": "s3://a/b.tar.gz", "sha256": SHA2, "async_inference": {}}]}
    )
    bulk = config.model("bulk")
    assert bulk is not None
    with pytest.raises(DeployError, match="async inference writes to S3"):
        plan_deployment(config, bulk, image_uri=IMAGE, model_data_url=DATA, existing=None)


def test_a_new_async_config_updates_the_async_endpoint_only() -> None:
    v1, v2 = async_config(), async_config(max_concurrent_invocations_per_instance=8)
    b1, b2 = v1.model("bulk"), v2.model("bulk")
    assert b1 is not None and b2 is not None
    first = plan_deployment(v1, b1, image_uri=IMAGE, model_data_url=DATA, existing=None)
    name = next(c.params["EndpointConfigName"] for c in first if c.operation == "CreateEndpointConfig")
    running = {"EndpointName": "router-bulk-async", "EndpointConfigName": name, "EndpointStatus": "InService"}
    assert [c.operation for c in first] == ["CreateModel", "CreateEndpointConfig", "CreateEndpoint"]
    update = plan_deployment(v2, b2, image_uri=IMAGE, model_data_url=DATA, existing=None, existing_async=running)
    assert [c.operation for c in update] == ["CreateModel", "CreateEndpointConfig", "UpdateEndpoint"]


# ---------------------------------------------------------------- serverless endpoints


def serverless_config(*, endpoint: bool = True, sha: str = SHA1, **serverless: Any) -> RouterConfig:
    model: dict[str, Any] = {
        "name": "iris", "framework": "sklearn", "artifact": "s3://artifacts/iris.joblib", "sha256": sha,
        "serverless": {"memory_mb": 3072, "max_concurrency": 20, **serverless},
    }
    if endpoint:
        model["endpoint"] = {"name": "iris-prod"}
    return RouterConfig.model_validate({"sagemaker": {"execution_role_arn": ROLE, "region": "us-east-1"}, "models": [model]})


def test_deploy_creates_the_serverless_endpoint_with_serverless_config(sm: Any) -> None:
    config = serverless_config(endpoint=False)
    text = deploy(config, iris(config), sm, image_uri=IMAGE, model_data_url=DATA)
    endpoint = sm.describe_endpoint(EndpointName="router-iris-serverless")
    described = sm.describe_endpoint_config(EndpointConfigName=endpoint["EndpointConfigName"])
    [variant] = described["ProductionVariants"]
    # botocore validated the request shape; the stored variant has no instance type or count.
    assert variant["ServerlessConfig"] == {"MemorySizeInMB": 3072, "MaxConcurrency": 20}
    assert variant["ModelName"] == sagemaker_model_name(iris(config))
    assert "InstanceType" not in variant and "InitialInstanceCount" not in variant
    assert [line.split(". ", 1)[1] for line in text.splitlines() if ". sagemaker " in line] == [
        "sagemaker CreateModel", "sagemaker CreateEndpointConfig", "sagemaker CreateEndpoint"]


def test_a_model_with_both_gets_a_real_time_and_a_serverless_endpoint(sm: Any) -> None:
    config = serverless_config()
    deploy(config, iris(config), sm, image_uri=IMAGE, model_data_url=DATA)
    names = {e["EndpointName"] for e in sm.list_endpoints()["Endpoints"]}
    assert names == {"iris-prod", "router-iris-serverless"}
    realtime = sm.describe_endpoint_config(EndpointConfigName=sm.describe_endpoint(EndpointName="iris-prod")["EndpointConfigName"])
    assert realtime["ProductionVariants"][0]["InstanceType"] == "ml.m5.large"
    # Deployed again unchanged: nothing to do for either endpoint.
    client = MotoWithUpdateEndpoint(sm)
    assert deploy(config, iris(config), client, image_uri=IMAGE, model_data_url=DATA).startswith("Nothing to do")


def test_a_new_serverless_memory_size_updates_the_serverless_endpoint_only(sm: Any) -> None:
    v1 = serverless_config()
    deploy(v1, iris(v1), sm, image_uri=IMAGE, model_data_url=DATA)
    v2 = serverless_config(memory_mb=6144)
    client = MotoWithUpdateEndpoint(sm)
    deploy(v2, iris(v2), client, image_uri=IMAGE, model_data_url=DATA)
    [update] = client.updates
    assert update["EndpointName"] == "router-iris-serverless"
    described = sm.describe_endpoint_config(EndpointConfigName=update["EndpointConfigName"])
    assert described["ProductionVariants"][0]["ServerlessConfig"]["MemorySizeInMB"] == 6144


def test_dry_run_shows_the_serverless_endpoint(sm: Any) -> None:
    config = serverless_config()
    text = deploy(config, iris(config), sm, image_uri=IMAGE, model_data_url=DATA, dry_run=True)
    assert sm.list_endpoints()["Endpoints"] == []
    assert '"ServerlessConfig": {' in text and '"MemorySizeInMB": 3072' in text and '"MaxConcurrency": 20' in text
    assert text.count("sagemaker CreateEndpoint\n") == 2 and "Note: Serverless endpoint router-iris-serverless" in text
