"""Deploys a configured model to SageMaker: Model, EndpointConfig, then Endpoint (create or update),
for its real-time endpoint and its asynchronous inference endpoint (AsyncInferenceConfig, then
autoscaling down to min_instances once it is InService).

A pure planner returns the exact API calls as frozen dataclasses; `execute` runs them with an
injected boto3 client and `describe_plan` prints them (`--dry-run`). Official container images
come from the optional `sagemaker` SDK (extra `deploy`), imported only when needed.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from router.adapters.aws_errors import aws_error_code, aws_error_message, is_already_exists, is_not_found
from router.config import ModelSpec, RouterConfig
from router.errors import ConfigError
from router.sagemaker_names import SAGEMAKER_NAME_MAX, sagemaker_model_name
from sagemaker_jobs.images import DEFAULT_IMAGES

VARIANT_NAME = "AllTraffic"
# Framework containers load code/inference.py from inside model.tar.gz (sagemaker_jobs/package.py).
CODE_DIR = "/opt/ml/model/code"
# Endpoint statuses that accept UpdateEndpoint; others are mid-change or failed.
UPDATABLE_STATUSES = frozenset({"InService", "OutOfService"})
TAG_MODEL = "router:model"
TAG_VERSION = "router:model-sha256"


class DeployError(Exception):
    """A deployment cannot proceed: missing SDK, endpoint in the wrong state, or an AWS error."""


@dataclass(frozen=True)
class ApiCall:
    """One AWS API call, exactly as it will be made."""

    service: str
    operation: str
    params: dict[str, Any] = field(default_factory=dict, hash=False)

    @property
    def method(self) -> str:
        """The boto3 method name: CreateEndpointConfig -> create_endpoint_config."""
        return "".join(f"_{c.lower()}" if c.isupper() else c for c in self.operation).lstrip("_")


# ---------------------------------------------------------------- names


def endpoint_config_name(endpoint_name: str, model_name: str, container: dict[str, Any], variant: dict[str, Any]) -> str:
    """`<endpoint>-<hash>`: a new name whenever the model version, image, environment or
    instances change, because an EndpointConfig is immutable and UpdateEndpoint needs a new one."""
    digest = hashlib.sha256(
        json.dumps({"model": model_name, "container": container, "variant": variant}, sort_keys=True).encode()
    ).hexdigest()[:10]
    head = endpoint_name[: SAGEMAKER_NAME_MAX - len(digest) - 1].rstrip("-")
    return f"{head}-{digest}"


# ---------------------------------------------------------------- images


def resolve_image_uri(framework: str, region: str, version: str | None = None, *, instance_type: str | None = None) -> str:
    """The official SageMaker inference image for a router framework, via the optional SDK: by
    default the one sagemaker_jobs/images.py names (an image whose Python and packages run
    code/inference.py).

    Raises DeployError when the SDK is not installed (it is 900+ MB and never part of the Lambda):
    install `lambda-sagemaker-router[deploy]`, or pass --image-uri / set the model's image_uri.
    """
    image = DEFAULT_IMAGES.get(framework)
    if image is None:
        raise DeployError(f"framework {framework!r} has no official SageMaker image: set the model's image_uri or pass --image-uri")
    retrieve = _sdk_retrieve()
    version = version or image.version
    try:
        uri = retrieve(
            framework=image.sdk_framework,
            region=region,
            version=version,
            py_version=image.py_version,
            image_scope="inference",
            instance_type=instance_type,
        )
    except (ValueError, KeyError) as e:
        raise DeployError(f"no {image.sdk_framework} image for version {version!r} in {region}: {e}") from None
    return str(uri)


def _sdk_retrieve() -> Any:
    try:  # sagemaker SDK v3 moved image_uris under sagemaker.core
        from sagemaker.core.image_uris import retrieve

        return retrieve
    except ImportError:
        pass
    try:
        from sagemaker.image_uris import retrieve

        return retrieve
    except ImportError:
        raise DeployError(
            "resolving an official SageMaker image needs the sagemaker SDK: "
            "pip install 'lambda-sagemaker-router[deploy]', or pass --image-uri (or set the model's image_uri)"
        ) from None


def choose_image_uri(model_spec: ModelSpec, image_uri: str | None) -> str | None:
    """The model's configured image_uri wins; an explicit different --image-uri is a conflict."""
    if model_spec.image_uri and image_uri and image_uri != model_spec.image_uri:
        raise DeployError(
            f"model {model_spec.name} sets image_uri {model_spec.image_uri} in the config but {image_uri} was passed: remove one"
        )
    return model_spec.image_uri or image_uri


# ---------------------------------------------------------------- planning


def plan_deployment(
    config: RouterConfig,
    model_spec: ModelSpec,
    *,
    image_uri: str,
    model_data_url: str,
    existing: dict[str, Any] | None,
    existing_async: dict[str, Any] | None = None,
    existing_serverless: dict[str, Any] | None = None,
) -> list[ApiCall]:
    """The API calls that bring SageMaker to this model version. Pure: no I/O.

    `existing` is DescribeEndpoint's answer for the model's endpoint, or None when there is
    none; `existing_async` and `existing_serverless` the same for its async inference and
    serverless endpoints. A model without an `endpoint` still gets its SageMaker Model (batch transform uses it).
    When the endpoint already runs the planned config, the plan is empty.
    """
    role = config.sagemaker.execution_role_arn
    if not role:
        raise ConfigError(
            "<config>",
            ["sagemaker.execution_role_arn: required to deploy: the IAM role SageMaker assumes to read the model artifact"],
        )
    if not image_uri:
        raise DeployError(f"model {model_spec.name}: no container image (set image_uri or install the deploy extra)")
    if not model_data_url.startswith(("s3://", "https://")):
        raise DeployError(f"model_data_url must be an s3:// location of model.tar.gz, got {model_data_url!r}")
    model_name = sagemaker_model_name(model_spec)
    tags = [{"Key": TAG_MODEL, "Value": model_spec.name}, {"Key": TAG_VERSION, "Value": model_spec.sha256}]
    container: dict[str, Any] = {"Image": image_uri, "ModelDataUrl": model_data_url}
    if model_spec.framework != "container":
        # The framework containers' contract for user code shipped inside model.tar.gz.
        container["Environment"] = {"SAGEMAKER_PROGRAM": "inference.py", "SAGEMAKER_SUBMIT_DIRECTORY": CODE_DIR}
    create_model = ApiCall(
        "sagemaker",
        "CreateModel",
        {"ModelName": model_name, "ExecutionRoleArn": role, "PrimaryContainer": container, "Tags": tags},
    )
    realtime = _realtime_calls(model_spec, model_name, container, tags, existing)
    asynchronous = _async_calls(config, model_spec, model_name, container, tags, existing_async)
    serverless = _serverless_calls(model_spec, model_name, container, tags, existing_serverless)
    if model_spec.endpoint is None and model_spec.async_inference is None and model_spec.serverless is None:
        return [create_model]
    if not realtime and not asynchronous and not serverless:
        return []
    return [create_model, *realtime, *serverless, *asynchronous]


def serverless_variant(model_spec: ModelSpec, model_name: str) -> dict[str, Any]:
    """The ProductionVariant of a serverless endpoint: ServerlessConfig instead of an instance type and count."""
    spec = model_spec.serverless
    assert spec is not None
    return {
        "VariantName": VARIANT_NAME,
        "ModelName": model_name,
        "ServerlessConfig": {"MemorySizeInMB": spec.memory_mb, "MaxConcurrency": spec.max_concurrency},
    }


def _serverless_calls(
    model_spec: ModelSpec, model_name: str, container: dict[str, Any], tags: list[dict[str, str]], existing: dict[str, Any] | None
) -> list[ApiCall]:
    """EndpointConfig (ServerlessConfig variant) and Create/UpdateEndpoint of the model's serverless endpoint."""
    name = model_spec.serverless_endpoint_name
    if name is None:
        return []
    variant = serverless_variant(model_spec, model_name)
    config_name = endpoint_config_name(name, model_name, container, variant)
    return _endpoint_calls(name, config_name, {"ProductionVariants": [variant]}, tags, existing)


def _realtime_calls(
    model_spec: ModelSpec, model_name: str, container: dict[str, Any], tags: list[dict[str, str]], existing: dict[str, Any] | None
) -> list[ApiCall]:
    """EndpointConfig and Create/UpdateEndpoint of the model's real-time endpoint ([] when it runs this config)."""
    spec = model_spec.endpoint
    if spec is None:
        return []
    variant = {
        "VariantName": VARIANT_NAME,
        "ModelName": model_name,
        "InstanceType": spec.instance_type,
        "InitialInstanceCount": spec.instance_count,
        "InitialVariantWeight": 1.0,
    }
    config_name = endpoint_config_name(spec.name, model_name, container, variant)
    return _endpoint_calls(spec.name, config_name, {"ProductionVariants": [variant]}, tags, existing)


def _endpoint_calls(
    endpoint_name: str, config_name: str, config_params: dict[str, Any], tags: list[dict[str, str]], existing: dict[str, Any] | None
) -> list[ApiCall]:
    if existing is not None:
        if existing.get("EndpointConfigName") == config_name:
            return []
        status = str(existing.get("EndpointStatus", ""))
        if status not in UPDATABLE_STATUSES:
            hint = "delete it and deploy again" if status in ("Failed", "UpdateRollbackFailed") else "wait until it is InService"
            raise DeployError(f"endpoint {endpoint_name} is {status or 'in an unknown state'}: {hint}")
    calls = [ApiCall("sagemaker", "CreateEndpointConfig", {"EndpointConfigName": config_name, **config_params, "Tags": tags})]
    if existing is None:
        calls.append(ApiCall("sagemaker", "CreateEndpoint", {"EndpointName": endpoint_name, "EndpointConfigName": config_name, "Tags": tags}))
    else:
        # A rolling update: the old variant keeps serving until the new one is InService.
        calls.append(ApiCall("sagemaker", "UpdateEndpoint", {"EndpointName": endpoint_name, "EndpointConfigName": config_name}))
    return calls


def async_output_paths(config: RouterConfig, model_spec: ModelSpec) -> tuple[str, str]:
    """(S3OutputPath, S3FailurePath) of the model's async endpoint: configured, else under storage.jobs."""
    spec = model_spec.async_inference
    assert spec is not None
    root = config.storage.jobs.rstrip("/")
    return spec.output_path or f"{root}/async-output/", spec.failure_path or f"{root}/async-failure/"


def async_inference_config(config: RouterConfig, model_spec: ModelSpec) -> dict[str, Any]:
    """CreateEndpointConfig's AsyncInferenceConfig for the model's `async_inference`."""
    spec = model_spec.async_inference
    assert spec is not None
    output, failure = async_output_paths(config, model_spec)
    out: dict[str, Any] = {"S3OutputPath": output, "S3FailurePath": failure}
    notify = {k: v for k, v in (("SuccessTopic", spec.success_topic), ("ErrorTopic", spec.error_topic)) if v}
    if notify:
        out["NotificationConfig"] = notify
    return {"ClientConfig": {"MaxConcurrentInvocationsPerInstance": spec.max_concurrent_invocations_per_instance}, "OutputConfig": out}


def _async_calls(
    config: RouterConfig,
    model_spec: ModelSpec,
    model_name: str,
    container: dict[str, Any],
    tags: list[dict[str, str]],
    existing: dict[str, Any] | None,
) -> list[ApiCall]:
    """The async inference endpoint's EndpointConfig (AsyncInferenceConfig) and Create/UpdateEndpoint,
    then, once it is InService on this config, its autoscaling between min_instances and max_instances."""
    spec = model_spec.async_inference
    name = model_spec.async_endpoint_name
    if spec is None or name is None:
        return []
    async_config = async_inference_config(config, model_spec)
    for key in ("S3OutputPath", "S3FailurePath"):
        if not async_config["OutputConfig"][key].startswith("s3://"):
            raise DeployError(
                f"model {model_spec.name}: async inference writes to S3; set async_inference.output_path and failure_path "
                f"(or storage.jobs) to s3:// locations, got {async_config['OutputConfig'][key]}"
            )
    variant = {"VariantName": VARIANT_NAME, "ModelName": model_name, "InstanceType": spec.instance_type,
               "InitialInstanceCount": spec.instance_count, "InitialVariantWeight": 1.0}
    config_name = endpoint_config_name(name, model_name, container, {**variant, "AsyncInferenceConfig": async_config})
    calls = _endpoint_calls(name, config_name, {"ProductionVariants": [variant], "AsyncInferenceConfig": async_config}, tags, existing)
    if not calls and existing is not None and existing.get("EndpointStatus") == "InService":
        calls = async_scaling_calls(name, spec.min_instances, spec.max_instances, spec.scale_to_zero_after_s)
    return calls


def async_scaling_calls(endpoint_name: str, min_instances: int, max_instances: int, scale_in_cooldown_s: float) -> list[ApiCall]:
    """Application Auto Scaling for an async endpoint: instances track the queue (backlog per
    instance), down to min_instances (0: scale to zero) after the cooldown. Registered on an
    InService endpoint (a new endpoint gets it from the next `router models deploy`)."""
    resource = f"endpoint/{endpoint_name}/variant/{VARIANT_NAME}"
    dimension = "sagemaker:variant:DesiredInstanceCount"
    return [
        ApiCall(
            "application-autoscaling",
            "RegisterScalableTarget",
            {"ServiceNamespace": "sagemaker", "ResourceId": resource, "ScalableDimension": dimension,
             "MinCapacity": min_instances, "MaxCapacity": max_instances},
        ),
        ApiCall(
            "application-autoscaling",
            "PutScalingPolicy",
            {
                "PolicyName": f"{endpoint_name}-backlog",
                "ServiceNamespace": "sagemaker",
                "ResourceId": resource,
                "ScalableDimension": dimension,
                "PolicyType": "TargetTrackingScaling",
                "TargetTrackingScalingPolicyConfiguration": {
                    "TargetValue": 5.0,
                    "CustomizedMetricSpecification": {
                        "MetricName": "ApproximateBacklogSizePerInstance",
                        "Namespace": "AWS/SageMaker",
                        "Dimensions": [{"Name": "EndpointName", "Value": endpoint_name}],
                        "Statistic": "Average",
                    },
                    "ScaleInCooldown": int(scale_in_cooldown_s),
                    "ScaleOutCooldown": 60,
                },
            },
        ),
    ]


def describe_plan(plan: list[ApiCall]) -> str:
    """The plan as text: every API call with its exact parameters (for --dry-run)."""
    if not plan:
        return "Nothing to do: SageMaker already runs this model version.\n"
    lines = [f"{len(plan)} API call(s):"]
    for i, call in enumerate(plan, 1):
        lines.append(f"{i}. {call.service} {call.operation}")
        lines.extend("   " + line for line in json.dumps(call.params, indent=2, sort_keys=True).splitlines())
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- execution

# Content-addressed names: an existing Model or EndpointConfig of that name is this very version.
_IDEMPOTENT_CREATES = frozenset({"CreateModel", "CreateEndpointConfig"})


def execute(plan: list[ApiCall], sagemaker_client: Any, *, autoscaling_client: Any = None) -> list[dict[str, Any]]:
    """Run the plan in order with the injected clients (sagemaker, application-autoscaling);
    returns each call's response."""
    from botocore.exceptions import ClientError

    results: list[dict[str, Any]] = []
    for call in plan:
        client = autoscaling_client if call.service == "application-autoscaling" else sagemaker_client
        if client is None:
            raise DeployError(f"{call.operation} needs an {call.service} client")
        try:
            results.append(dict(getattr(client, call.method)(**call.params)))
        except ClientError as e:
            if call.operation in _IDEMPOTENT_CREATES and is_already_exists(e):
                results.append({})
                continue
            raise DeployError(f"{call.operation} failed ({aws_error_code(e)}): {aws_error_message(e)}") from None
    return results


def describe_existing_endpoint(sagemaker_client: Any, endpoint_name: str) -> dict[str, Any] | None:
    """DescribeEndpoint, or None when the endpoint does not exist."""
    from botocore.exceptions import ClientError

    try:
        return dict(sagemaker_client.describe_endpoint(EndpointName=endpoint_name))
    except ClientError as e:
        if is_not_found(e):
            return None
        raise DeployError(f"DescribeEndpoint {endpoint_name} failed ({aws_error_code(e)}): {aws_error_message(e)}") from None


def deploy(
    config: RouterConfig,
    model_spec: ModelSpec,
    sagemaker_client: Any,
    *,
    image_uri: str | None = None,
    model_data_url: str,
    dry_run: bool = False,
    autoscaling_client: Any = None,
) -> str:
    """Plan and (unless `dry_run`) execute the deployment of one model; returns the plan as text.

    A real run reads the endpoint's current state with DescribeEndpoint, so the plan is what
    really happens: CreateEndpoint the first time, UpdateEndpoint afterwards. A dry run makes no
    AWS call at all (`sagemaker_client` may be None: no credentials, no network, no SDK needed):
    it shows a first deployment, and an image it cannot resolve offline as a marked placeholder.
    """
    if dry_run:
        return dry_run_text(config, model_spec, image_uri=image_uri, model_data_url=model_data_url)
    region = config.sagemaker.region or str(getattr(getattr(sagemaker_client, "meta", None), "region_name", "") or "")
    image = choose_image_uri(model_spec, image_uri)
    if image is None:
        instance_type = model_spec.endpoint.instance_type if model_spec.endpoint else None
        image = resolve_image_uri(model_spec.framework, region, instance_type=instance_type)
    existing = describe_existing_endpoint(sagemaker_client, model_spec.endpoint.name) if model_spec.endpoint else None
    async_name = model_spec.async_endpoint_name
    existing_async = describe_existing_endpoint(sagemaker_client, async_name) if async_name else None
    serverless_name = model_spec.serverless_endpoint_name
    existing_serverless = describe_existing_endpoint(sagemaker_client, serverless_name) if serverless_name else None
    plan = plan_deployment(
        config, model_spec, image_uri=image, model_data_url=model_data_url, existing=existing, existing_async=existing_async,
        existing_serverless=existing_serverless,
    )
    text = describe_plan(plan)
    execute(plan, sagemaker_client, autoscaling_client=autoscaling_client)
    return text


IMAGE_PLACEHOLDER = "<IMAGE NOT RESOLVED: {why}>"


def dry_run_text(config: RouterConfig, model_spec: ModelSpec, *, image_uri: str | None, model_data_url: str) -> str:
    """The calls a first deployment of `model_spec` sends, offline: no client, no AWS call."""
    notes: list[str] = []
    image = choose_image_uri(model_spec, image_uri)
    if image is None:
        region = config.sagemaker.region or _local_region()
        instance_type = model_spec.endpoint.instance_type if model_spec.endpoint else None
        try:
            # The SDK's image table ships inside the package: resolving needs no network.
            image = resolve_image_uri(model_spec.framework, region, instance_type=instance_type)
        except DeployError as e:
            image = IMAGE_PLACEHOLDER.format(why=f"official {model_spec.framework} image for {region or 'your region'}")
            notes.append(f"The image is a placeholder: {e}. The EndpointConfigName hashes the image, so it changes too.")
    plan = plan_deployment(config, model_spec, image_uri=image, model_data_url=model_data_url, existing=None)
    if model_spec.endpoint is not None:
        notes.append(
            f"Offline: whether endpoint {model_spec.endpoint.name} exists was not checked. If it does, the deploy "
            "sends UpdateEndpoint (same EndpointName and EndpointConfigName) instead of CreateEndpoint, and nothing "
            "when it already runs this EndpointConfig."
        )
    if model_spec.serverless is not None:
        notes.append(
            f"Serverless endpoint {model_spec.serverless_endpoint_name}: no instance type or count (ServerlessConfig "
            f"{model_spec.serverless.memory_mb} MB, at most {model_spec.serverless.max_concurrency} concurrent calls); if it "
            "exists, the deploy sends UpdateEndpoint instead of CreateEndpoint, as for a real-time endpoint."
        )
    if model_spec.async_inference is not None:
        notes.append(
            f"Async endpoint {model_spec.async_endpoint_name}: once it is InService, deploying again registers its autoscaling "
            f"(Application Auto Scaling, {model_spec.async_inference.min_instances}-{model_spec.async_inference.max_instances} "
            "instances on the queue backlog; 0 scales to zero)."
        )
    text = "Dry run (offline: no AWS call was made), nothing changed. " + describe_plan(plan)
    return text + "".join(f"Note: {n}\n" for n in notes)


def _local_region() -> str:
    """The region boto3 would use, from the environment and ~/.aws/config only (no network)."""
    import botocore.session

    return str(botocore.session.get_session().get_config_variable("region") or "")


__all__ = [
    "ApiCall",
    "DeployError",
    "choose_image_uri",
    "deploy",
    "describe_existing_endpoint",
    "describe_plan",
    "dry_run_text",
    "endpoint_config_name",
    "execute",
    "plan_deployment",
    "resolve_image_uri",
    "sagemaker_model_name",
]
