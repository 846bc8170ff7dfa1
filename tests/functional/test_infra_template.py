"""The AWS SAM template (infra/template.yaml), validated offline: it loads with CloudFormation's
short-form tags, cfn-lint finds nothing, aws-sam-translator turns it into the expected resources,
the job table is exactly router/adapters/dynamodb_schema.table_definition(), IAM is least-privilege
(no wildcard grants, scoped resources, iam:PassRole only to SageMaker), every handler imports, and
the sizing defaults are the config's defaults.
"""

from __future__ import annotations

import copy
import importlib
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cfnlint.api import ManualArgs, lint
from cfnlint.decode import cfn_yaml
from samtranslator.translator.managed_policy_translator import ManagedPolicyLoader
from samtranslator.translator.transform import transform

from router.adapters import dynamodb_schema as schema
from router.cli.package_cmd import DEFAULT_RUNTIME
from router.config import Jobs, Runtime
from router.sagemaker_names import NAME_PREFIX, transform_job_name
from router.transform_events import EVENT_DETAIL_TYPE, EVENT_SOURCE

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "infra" / "template.yaml"
PARAMETERS_EXAMPLE = ROOT / "infra" / "parameters.example.json"

HANDLERS = {
    "ApiFunction": "router.lambdas.api.handler",
    "WorkerFunction": "router.lambdas.worker.handler",
    "EventsFunction": "router.lambdas.events.handler",
    "SweeperFunction": "router.lambdas.sweeper.handler",
    "TriggerFunction": "router.lambdas.trigger.handler",
}
WORKER_NAME = {"Fn::Sub": "${AWS::StackName}-worker"}
ROUTER_PREFIX = f"{NAME_PREFIX}-"

# cfn-lint findings we accept, by rule id, each with its reason. Empty today: the template is clean
# even with the informational (I) rules on. A new cfn-lint release that adds a finding fails this
# suite until the finding is fixed or justified here.
ACCEPTED_LINT_FINDINGS: dict[str, str] = {}

# Allow statements that may name Resource "*": AWS offers no resource-level permission for them.
RESOURCE_STAR_ACTIONS = frozenset({
    "ecr:GetAuthorizationToken", "cloudwatch:PutMetricData",
    # Scalable targets (an async endpoint's autoscaling) have no ARN before they exist.
    "application-autoscaling:RegisterScalableTarget", "application-autoscaling:PutScalingPolicy",
    "application-autoscaling:DescribeScalableTargets", "application-autoscaling:DescribeScalingPolicies",
})


# ---------------------------------------------------------------- fixtures and helpers


class OfflinePolicyLoader(ManagedPolicyLoader):
    """The translator asks IAM for AWS managed policy names only when a template uses them by name;
    this template uses none, so an empty map (and no AWS call) must do."""

    def __init__(self) -> None:
        super().__init__(iam_client=None)  # type: ignore[arg-type]

    def load(self) -> dict[str, str]:
        return {}


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    loaded = cfn_yaml.load(str(TEMPLATE))
    return json.loads(json.dumps(loaded))  # plain dicts/lists/strs, no cfn-lint node types


@pytest.fixture(scope="module")
def translated(template: dict[str, Any]) -> dict[str, Any]:
    sam = copy.deepcopy(template)
    # What `sam package` / `sam deploy` do first: the local CodeUri becomes the uploaded zip.
    assert sam["Globals"]["Function"]["CodeUri"] == ".."  # `sam build` runs the root Makefile
    sam["Globals"]["Function"]["CodeUri"] = "s3://router-deploy-bucket/router.zip"
    return transform(sam, {}, OfflinePolicyLoader())


def resources_of(tpl: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {name: r for name, r in tpl["Resources"].items() if r["Type"] == kind}


def statements(node: Any, path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every IAM policy statement anywhere under `node` (identity, trust and resource policies),
    with where it was found. Both branches of an Fn::If are walked."""
    if isinstance(node, dict):
        if "Effect" in node and ("Action" in node or "NotAction" in node):
            yield path, node
            return
        for key, value in node.items():
            yield from statements(value, f"{path}/{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from statements(value, f"{path}[{i}]")


def as_list(value: Any) -> list[Any]:
    if isinstance(value, dict) and "Fn::If" in value:
        return as_list(value["Fn::If"][1]) + as_list(value["Fn::If"][2])
    return list(value) if isinstance(value, list) else [value]


def sub_text(value: Any) -> str:
    """The text of a resource reference, for pattern checks: Fn::Sub strings, or a GetAtt/Ref rendered."""
    if isinstance(value, str):
        return value
    if "Fn::Sub" in value:
        sub = value["Fn::Sub"]
        return sub if isinstance(sub, str) else str(sub[0])
    if "Fn::GetAtt" in value:
        att = value["Fn::GetAtt"]
        return "${" + (".".join(att) if isinstance(att, list) else att) + "}"
    if "Ref" in value:
        return "${" + value["Ref"] + "}"
    raise AssertionError(f"unexpected resource expression {value!r}")


def allow_statements(tpl: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [(p, s) for p, s in statements(tpl["Resources"]) if s["Effect"] == "Allow"]


# ---------------------------------------------------------------- loading and linting


def test_template_loads_with_cloudformation_short_form_tags(template: dict[str, Any]) -> None:
    # !Sub / !GetAtt / !Ref / !If became their long forms: the loader understood the tags.
    assert template["Transform"] == "AWS::Serverless-2016-10-31"
    assert template["Outputs"]["ApiUrl"]["Value"] == {
        "Fn::Sub": "https://${RouterApi}.execute-api.${AWS::Region}.${AWS::URLSuffix}/${StageName}/v1"
    }
    assert template["Resources"]["ApiLogGroup"]["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}
    assert template["Outputs"]["JobTableName"]["Value"] == {"Ref": "JobTable"}


def test_cfn_lint_finds_nothing_even_informational() -> None:
    matches = lint(TEMPLATE.read_text(), config=ManualArgs(include_checks=["I"], regions=["us-east-1"]))
    findings = [f"{m.rule.id} line {m.linenumber}: {m.message}" for m in matches if m.rule.id not in ACCEPTED_LINT_FINDINGS]
    assert findings == []


def test_cfn_lint_command_line_exits_zero() -> None:
    # The same check an operator runs before `sam deploy` (exit 0: no errors, no warnings).
    run = subprocess.run(
        [sys.executable, "-c", "import sys; from cfnlint.runner import main; sys.exit(main())", "--", str(TEMPLATE)],
        capture_output=True, text=True, timeout=240, check=False,
    )
    assert run.returncode == 0, run.stdout + run.stderr


def test_cfn_lint_would_catch_a_broken_template() -> None:
    # Guards the two tests above against passing vacuously (e.g. linting nothing).
    broken = TEMPLATE.read_text().replace("BillingMode: PAY_PER_REQUEST", "BillingMode: FREE", 1)
    ids = {m.rule.id for m in lint(broken, config=ManualArgs(regions=["us-east-1"]))}
    assert "E3030" in ids  # 'FREE' is not one of the allowed values


# ---------------------------------------------------------------- the SAM transform


def test_sam_transform_yields_the_deployed_resources(translated: dict[str, Any]) -> None:
    types = {r["Type"] for r in translated["Resources"].values()}
    assert not any(t.startswith("AWS::Serverless::") for t in types)
    for kind in (
        "AWS::ApiGateway::RestApi", "AWS::ApiGateway::Stage", "AWS::ApiGateway::Deployment",
        "AWS::Lambda::Function", "AWS::Lambda::EventInvokeConfig", "AWS::Events::Rule",
        "AWS::DynamoDB::Table", "AWS::S3::Bucket", "AWS::SQS::Queue", "AWS::IAM::Role",
        "AWS::CloudWatch::Alarm", "AWS::Logs::LogGroup",
    ):
        assert kind in types, kind
    functions = resources_of(translated, "AWS::Lambda::Function")
    assert {name: f["Properties"]["Handler"] for name, f in functions.items()} == HANDLERS
    for name, f in functions.items():
        props = f["Properties"]
        assert props["Runtime"] == DEFAULT_RUNTIME, name
        assert props["Code"] == {"S3Bucket": "router-deploy-bucket", "S3Key": "router.zip"}, name
        assert props["Architectures"] == [{"Ref": "Architecture"}], name
        assert props["LoggingConfig"] == {"LogGroup": {"Ref": name.replace("Function", "LogGroup")}}, name
    assert len(resources_of(translated, "AWS::DynamoDB::Table")) == 1
    assert len(resources_of(translated, "AWS::S3::Bucket")) == 2


def test_rest_api_uses_sigv4_and_proxies_v1_to_the_router_function(translated: dict[str, Any]) -> None:
    api = translated["Resources"]["RouterApi"]["Properties"]
    body = api["Body"]
    assert list(body["paths"]) == ["/v1/{proxy+}"]
    method = body["paths"]["/v1/{proxy+}"]["x-amazon-apigateway-any-method"]
    integration = method["x-amazon-apigateway-integration"]
    assert integration["type"] == "aws_proxy"
    assert "${ApiFunction.Arn}" in integration["uri"]["Fn::Sub"]
    # Invoked through the function's resource policy, not with the caller's credentials.
    assert "credentials" not in integration
    assert method["security"] == [{"AWS_IAM": []}]
    assert body["components"]["securitySchemes"]["AWS_IAM"]["x-amazon-apigateway-authtype"] == "awsSigv4"
    assert "timeoutInMillis" not in integration  # API Gateway's default: 29 s (config runtime.sync_timeout_s)
    permission = translated["Resources"]["ApiFunctionProxyPermissionStage"]["Properties"]
    assert permission["Principal"] == "apigateway.amazonaws.com"
    assert permission["FunctionName"] == {"Ref": "ApiFunction"}
    stage = resources_of(translated, "AWS::ApiGateway::Stage")
    assert [s["Properties"]["StageName"] for s in stage.values()] == [{"Ref": "StageName"}]


def test_worker_async_invokes_retry_then_go_to_the_dead_letter_queue(template: dict[str, Any], translated: dict[str, Any]) -> None:
    configs = resources_of(translated, "AWS::Lambda::EventInvokeConfig")
    by_function = {c["Properties"]["FunctionName"]["Ref"]: c["Properties"] for c in configs.values()}
    assert set(by_function) == {"WorkerFunction", "TriggerFunction"}
    props = by_function["WorkerFunction"]
    # SAM resolves the parameter (its default here; the deploy-time value in CloudFormation).
    retries = template["Parameters"]["WorkerMaxRetryAttempts"]
    assert props["MaximumRetryAttempts"] == retries["Default"] == 2
    assert retries["MaxValue"] == 2  # Lambda's maximum for async invokes
    assert props["DestinationConfig"]["OnFailure"]["Destination"] == {"Fn::GetAtt": ["WorkerDeadLetterQueue", "Arn"]}
    # And the worker may actually send there (SAM adds the statement).
    worker_role = json.dumps(translated["Resources"]["WorkerFunctionRole"])
    assert '"sqs:SendMessage"' in worker_role and "WorkerDeadLetterQueue" in worker_role
    # Trigger events: retried (idempotent), then kept in their own queue.
    trigger = by_function["TriggerFunction"]
    assert trigger["MaximumRetryAttempts"] == 2
    assert trigger["DestinationConfig"]["OnFailure"]["Destination"] == {"Fn::GetAtt": ["TriggerDeadLetterQueue", "Arn"]}


def test_object_created_events_of_the_trigger_bucket_reach_the_trigger_function(translated: dict[str, Any]) -> None:
    rules = [r["Properties"] for r in resources_of(translated, "AWS::Events::Rule").values() if "EventPattern" in r["Properties"]]
    [rule] = [r for r in rules if r["EventPattern"]["source"] == ["aws.s3"]]
    # The shape router/triggers.py parses (EventBridge "Object Created"), for the parameter's bucket only.
    assert rule["EventPattern"] == {"source": ["aws.s3"], "detail-type": ["Object Created"], "detail": {"bucket": {"name": [{"Ref": "TriggerBucketName"}]}}}
    assert rule["Targets"][0]["Arn"] == {"Fn::GetAtt": ["TriggerFunction", "Arn"]}
    # Reading sources and writing results: only in that bucket, only when it is given.
    policy = translated["Resources"]["TriggerBucketAccessPolicy"]
    assert policy["Condition"] == "HasTriggerBucket"
    for name in ("WorkerFunction", "EventsFunction", "SweeperFunction", "TriggerFunction"):
        assert {"Fn::If": ["HasTriggerBucket", {"Ref": "TriggerBucketAccessPolicy"}, {"Ref": "AWS::NoValue"}]} in (
            translated["Resources"][f"{name}Role"]["Properties"]["ManagedPolicyArns"]
        ), name


def test_sagemaker_state_changes_of_router_transform_jobs_reach_the_events_function(translated: dict[str, Any]) -> None:
    rules = resources_of(translated, "AWS::Events::Rule")
    pattern_rules = [r["Properties"] for r in rules.values() if "EventPattern" in r["Properties"]]
    [rule] = [r for r in pattern_rules if r["EventPattern"]["source"] != ["aws.s3"]]
    assert rule["EventPattern"] == {
        "source": [EVENT_SOURCE],
        "detail-type": [EVENT_DETAIL_TYPE],
        "detail": {"TransformJobName": [{"prefix": ROUTER_PREFIX}]},
    }
    assert rule["Targets"][0]["Arn"] == {"Fn::GetAtt": ["EventsFunction", "Arn"]}
    # The filter admits every name the router gives its transform jobs (both name forms).
    for job_id in ("job_01JABCDEFGHJKMNPQRSTVWXYZ0", "an id: with odd characters"):
        assert transform_job_name(job_id).startswith(ROUTER_PREFIX)


def test_async_inference_notifications_reach_the_events_function(translated: dict[str, Any]) -> None:
    subs = [r["Properties"] for r in resources_of(translated, "AWS::SNS::Subscription").values()
            if r["Properties"].get("Protocol") == "lambda"]
    assert [s["TopicArn"] for s in subs] == [{"Ref": "AsyncInferenceTopic"}]
    assert subs[0]["Endpoint"] == {"Fn::GetAtt": ["EventsFunction", "Arn"]}
    # SageMaker (its execution role) may publish there; nobody else is given sns:Publish.
    role = json.dumps(translated["Resources"]["SageMakerExecutionRole"])
    assert '"sns:Publish"' in role and "AsyncInferenceTopic" in role


def test_sweeper_runs_every_five_minutes(translated: dict[str, Any]) -> None:
    rules = resources_of(translated, "AWS::Events::Rule")
    scheduled = [r["Properties"] for r in rules.values() if "ScheduleExpression" in r["Properties"]]
    assert [(r["ScheduleExpression"], r["Targets"][0]["Arn"]) for r in scheduled] == [
        ("rate(5 minutes)", {"Fn::GetAtt": ["SweeperFunction", "Arn"]})
    ]
    sweeper = translated["Resources"]["SweeperFunction"]["Properties"]
    assert sweeper["Timeout"] < 300  # a run ends before the next one starts


# ---------------------------------------------------------------- the job table


def test_job_table_is_exactly_the_schema_modules_definition(template: dict[str, Any]) -> None:
    props = template["Resources"]["JobTable"]["Properties"]
    expected = schema.table_definition("unused")
    del expected["TableName"]
    assert {k: props[k] for k in expected} == expected
    assert props["TableName"] == {"Fn::Sub": "${AWS::StackName}-jobs"}
    # Nothing else about keys or indexes (no LSIs, no provisioned throughput) may sneak in.
    assert set(props) - set(expected) == {
        "TableName", "TimeToLiveSpecification", "PointInTimeRecoverySpecification", "SSESpecification"
    }


def test_job_table_has_ttl_on_the_schema_attribute_and_point_in_time_recovery(template: dict[str, Any]) -> None:
    table = template["Resources"]["JobTable"]
    props = table["Properties"]
    assert props["TimeToLiveSpecification"] == {"AttributeName": schema.TTL_ATTR, "Enabled": True}
    assert props["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    assert table["DeletionPolicy"] == table["UpdateReplacePolicy"] == "Retain"


# ---------------------------------------------------------------- storage


def test_buckets_block_public_access_encrypt_and_job_data_expires(template: dict[str, Any]) -> None:
    buckets = resources_of(template, "AWS::S3::Bucket")
    assert set(buckets) == {"ArtifactsBucket", "JobsBucket"}
    for name, bucket in buckets.items():
        props = bucket["Properties"]
        assert props["PublicAccessBlockConfiguration"] == dict.fromkeys(
            ("BlockPublicAcls", "BlockPublicPolicy", "IgnorePublicAcls", "RestrictPublicBuckets"), True
        ), name
        sse = props["BucketEncryption"]["ServerSideEncryptionConfiguration"]
        assert sse[0]["ServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256", name
    rules = buckets["JobsBucket"]["Properties"]["LifecycleConfiguration"]["Rules"]
    expiring = [r for r in rules if r["Status"] == "Enabled" and "ExpirationInDays" in r and "Prefix" not in r]
    assert [r["ExpirationInDays"] for r in expiring] == [{"Ref": "JobDataExpirationDays"}]


# ---------------------------------------------------------------- IAM


def test_no_allow_statement_grants_a_wildcard_action(translated: dict[str, Any]) -> None:
    found = allow_statements(translated)
    assert len(found) > 20  # the walk really found the policies
    offenders = []
    for path, st in found:
        assert "NotAction" not in st, path  # an Allow with NotAction grants everything else
        offenders += [f"{path}: {a}" for a in as_list(st["Action"]) if "*" in a]
    assert offenders == []


def test_wildcard_actions_appear_only_in_deny_statements(translated: dict[str, Any]) -> None:
    # The TLS-only bucket policies deny "s3:*" over plain HTTP: a Deny only takes permissions away.
    wild = [(p, s) for p, s in statements(translated["Resources"]) if any("*" in a for a in as_list(s["Action"]))]
    assert wild, "expected the TLS-only Deny statements"
    for path, st in wild:
        assert st["Effect"] == "Deny", path
        assert st["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}, path


def test_allow_statements_are_scoped_to_the_stacks_resources(translated: dict[str, Any]) -> None:
    index_arns = {"${JobTable.Arn}/index/" + g["IndexName"] for g in schema.GLOBAL_SECONDARY_INDEXES}
    for path, st in allow_statements(translated):
        if "Principal" in st:  # trust policies: who may assume a role
            continue
        actions = as_list(st["Action"])
        resources = [sub_text(r) for r in as_list(st["Resource"])]
        if "*" in resources:
            assert set(actions) <= RESOURCE_STAR_ACTIONS, path
            continue
        for action in actions:
            service = action.split(":")[0]
            for res in resources:
                if service == "dynamodb":
                    assert res == "${JobTable.Arn}" or res in index_arns, (path, res)
                elif service == "s3":
                    own = re.fullmatch(r"\$\{(ArtifactsBucket|JobsBucket)\.Arn\}(/.*)?", res)
                    trigger = re.fullmatch(r"arn:\$\{AWS::Partition\}:s3:::\$\{TriggerBucketName\}(/\*)?", res)
                    assert own or (trigger and path.startswith("/TriggerBucketAccessPolicy/")), (path, res)
                elif service == "lambda":
                    assert res.endswith(":function:${AWS::StackName}-worker"), (path, res)
                elif service == "sagemaker":
                    assert re.search(r":(transform-job|model)/router-\*$|:(endpoint|endpoint-config)/\$\{SageMakerEndpointPrefix\}\*$", res), (path, res)
                elif service == "sqs":
                    assert res in ("${WorkerDeadLetterQueue.Arn}", "${TriggerDeadLetterQueue.Arn}"), (path, res)
                elif service == "sns":
                    assert action == "sns:Publish" and res in ("${AsyncInferenceTopic}", "${JobNotificationTopic}"), (path, res)
                elif service == "iam":
                    assert action == "iam:PassRole" and res in ("${SageMakerExecutionRole.Arn}", "${SageMakerExecutionRoleArn}"), (path, res)
                elif service == "ecr":
                    assert res.endswith(":repository/*"), (path, res)
                elif service == "logs":
                    assert res.endswith(":log-group:/aws/sagemaker/*"), (path, res)
                else:
                    raise AssertionError(f"{path}: unexpected service {service}")


def test_transform_job_and_table_index_scopes_match_the_code(translated: dict[str, Any]) -> None:
    # The names in the policies are the names the code uses: a renamed index or prefix fails here.
    text = json.dumps(translated)
    assert f":transform-job/{ROUTER_PREFIX}*" in text
    for index in (schema.OWNER_INDEX, schema.ACTIVE_INDEX, schema.ACTIVE_OWNER_INDEX):
        assert f"${{JobTable.Arn}}/index/{index}" in text


def test_pass_role_only_for_the_sagemaker_execution_role_and_only_to_sagemaker(translated: dict[str, Any]) -> None:
    passing = [(p, s) for p, s in allow_statements(translated) if "iam:PassRole" in as_list(s["Action"])]
    assert len(passing) == 1
    path, st = passing[0]
    assert path.startswith("/ModelDeployerPolicy/"), path  # an operator policy; no function role passes roles
    assert as_list(st["Action"]) == ["iam:PassRole"]
    assert st["Resource"] == {
        "Fn::If": ["CreateSageMakerRole", {"Fn::GetAtt": ["SageMakerExecutionRole", "Arn"]}, {"Ref": "SageMakerExecutionRoleArn"}]
    }
    assert st["Condition"] == {"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}}
    trust = translated["Resources"]["SageMakerExecutionRole"]["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    assert [s["Principal"] for s in trust] == [{"Service": "sagemaker.amazonaws.com"}]


def test_function_roles_carry_only_basic_logging_and_the_stacks_own_policies(translated: dict[str, Any]) -> None:
    basic = "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"
    xray = "arn:aws:iam::aws:policy/AWSXrayWriteOnlyAccess"  # SAM's, for `Tracing` (EnableTracing): trace writes only
    for name in HANDLERS:
        role = translated["Resources"][f"{name}Role"]["Properties"]
        trigger = {"Fn::If": ["HasTriggerBucket", {"Ref": "TriggerBucketAccessPolicy"}, {"Ref": "AWS::NoValue"}]}
        own = [p for p in role["ManagedPolicyArns"] if p != trigger]
        assert own == [basic, xray, {"Ref": "JobStateAccessPolicy"}], name


def test_enable_tracing_turns_on_xray_and_the_powertools_tracer(template: dict[str, Any], translated: dict[str, Any]) -> None:
    assert template["Parameters"]["EnableTracing"]["Default"] == "false"
    on = {"Fn::Equals": [{"Ref": "EnableTracing"}, "true"]}
    assert template["Conditions"]["TracingOn"] == on
    env = template["Globals"]["Function"]["Environment"]["Variables"]
    assert env["POWERTOOLS_TRACE_DISABLED"] == {"Fn::If": ["TracingOn", "false", "true"]}
    for name in HANDLERS:
        props = translated["Resources"][name]["Properties"]
        assert props["TracingConfig"] == {"Mode": {"Fn::If": ["TracingOn", "Active", "PassThrough"]}}, name


def test_only_the_api_and_sweeper_start_transform_jobs_and_only_the_api_invokes_endpoints(translated: dict[str, Any]) -> None:
    def actions_of(role: str) -> set[str]:
        return {a for _, s in statements(translated["Resources"][role]) if s["Effect"] == "Allow" for a in as_list(s["Action"])}

    assert "sagemaker:CreateTransformJob" in actions_of("ApiFunctionRole")
    assert "sagemaker:CreateTransformJob" in actions_of("SweeperFunctionRole")
    assert "sagemaker:InvokeEndpoint" in actions_of("ApiFunctionRole")
    assert "sagemaker:InvokeEndpointAsync" in actions_of("ApiFunctionRole") & actions_of("SweeperFunctionRole")
    for role in ("WorkerFunctionRole", "EventsFunctionRole"):
        assert not any(a.startswith("sagemaker:") for a in actions_of(role)), role
    assert "dynamodb:PutItem" in actions_of("ApiFunctionRole")
    assert "dynamodb:PutItem" not in actions_of("EventsFunctionRole") | actions_of("WorkerFunctionRole")


def test_sam_build_runs_router_package_for_every_function(template: dict[str, Any]) -> None:
    # BuildMethod makefile: `sam build` runs `make build-<LogicalId>` in CodeUri (the repository
    # root) with ARTIFACTS_DIR; each target must build the size-checked package and copy it there.
    makefile = (ROOT / "Makefile").read_text()
    functions = resources_of(template, "AWS::Serverless::Function")
    assert (TEMPLATE.parent / template["Globals"]["Function"]["CodeUri"]).resolve() == ROOT
    recipe = re.search(r"^(build-\w+(?: build-\w+)*): package\n\tcp -a \$\(LAMBDA_DIR\)/\. \"\$\(ARTIFACTS_DIR\)/\"$", makefile, re.M)
    assert recipe is not None
    assert set(recipe.group(1).split()) == {f"build-{name}" for name in functions}
    assert re.search(r"^LAMBDA_DIR  \?= build/lambda$", makefile, re.M)
    assert re.search(r"^package: \$\(STAMP\).*\n\t\$\(BIN\)/router package --out \$\(LAMBDA_DIR\)", makefile, re.M)
    for name, f in functions.items():
        assert f["Metadata"] == {"BuildMethod": "makefile"}, name
        assert "CodeUri" not in f["Properties"] and "Runtime" not in f["Properties"], name


# ---------------------------------------------------------------- handlers and environment


def test_every_handler_in_the_template_imports_and_is_callable(template: dict[str, Any]) -> None:
    functions = resources_of(template, "AWS::Serverless::Function")
    assert {name: f["Properties"]["Handler"] for name, f in functions.items()} == HANDLERS
    for dotted in HANDLERS.values():
        module, _, attr = dotted.rpartition(".")
        assert callable(getattr(importlib.import_module(module), attr)), dotted


@pytest.mark.parametrize("dotted", sorted(HANDLERS.values()))
def test_each_handler_imports_on_its_own_in_a_fresh_interpreter(dotted: str) -> None:
    # What a cold start does: import only this module (every handler is importable on its own).
    module, _, attr = dotted.rpartition(".")
    code = f"import importlib, sys; f = getattr(importlib.import_module({module!r}), {attr!r}); sys.exit(0 if callable(f) else 3)"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False, cwd=ROOT)
    assert run.returncode == 0, run.stderr


def test_functions_get_the_environment_bootstrap_reads(template: dict[str, Any]) -> None:
    env = template["Globals"]["Function"]["Environment"]["Variables"]
    assert env["ROUTER_RUNTIME"] == "aws"
    assert env["ROUTER_WORKER_FUNCTION"] == WORKER_NAME
    assert template["Resources"]["WorkerFunction"]["Properties"]["FunctionName"] == WORKER_NAME
    assert env["ROUTER_CONFIG"] == {
        "Fn::If": ["UseBundledConfig", {"Ref": "BundledConfigPath"}, {"Fn::Sub": "s3://${ArtifactsBucket}/${ConfigKey}"}]
    }
    assert env["POWERTOOLS_SERVICE_NAME"] == "router"
    assert env["POWERTOOLS_METRICS_NAMESPACE"] == "InferenceRouter"
    bootstrap = (ROOT / "router" / "bootstrap.py").read_text()
    for name in ("ROUTER_CONFIG", "ROUTER_RUNTIME", "ROUTER_WORKER_FUNCTION"):
        assert f'"{name}"' in bootstrap, name
    for name in HANDLERS:
        assert "Environment" not in template["Resources"][name]["Properties"], name  # one set, in Globals


def test_sizing_defaults_are_the_configs_runtime_defaults(template: dict[str, Any]) -> None:
    params = template["Parameters"]
    rt = Runtime()
    assert params["ApiMemorySize"]["Default"] == params["WorkerMemorySize"]["Default"] == rt.lambda_memory_mb
    assert params["ApiTimeout"]["Default"] == rt.sync_timeout_s
    assert params["WorkerTimeout"]["Default"] == rt.lambda_timeout_s
    timeout_max = next(m.le for m in Runtime.model_fields["lambda_timeout_s"].metadata if hasattr(m, "le"))
    assert params["WorkerTimeout"]["MaxValue"] == timeout_max
    assert params["EphemeralStorageSize"]["Default"] == rt.lambda_ephemeral_mb
    assert params["JobDataExpirationDays"]["Default"] == Jobs().ttl_days
    res = template["Resources"]
    assert res["ApiFunction"]["Properties"]["MemorySize"] == {"Ref": "ApiMemorySize"}
    assert res["ApiFunction"]["Properties"]["Timeout"] == {"Ref": "ApiTimeout"}
    assert res["WorkerFunction"]["Properties"]["MemorySize"] == {"Ref": "WorkerMemorySize"}
    assert res["WorkerFunction"]["Properties"]["Timeout"] == {"Ref": "WorkerTimeout"}
    for name in ("ApiFunction", "WorkerFunction"):
        assert res[name]["Properties"]["EphemeralStorage"] == {"Size": {"Ref": "EphemeralStorageSize"}}


# ---------------------------------------------------------------- alarms and outputs


def test_alarms_cover_the_dlq_api_5xx_and_every_functions_errors_and_throttles(template: dict[str, Any]) -> None:
    alarms = [a["Properties"] for a in resources_of(template, "AWS::CloudWatch::Alarm").values()]
    for alarm in alarms:
        assert alarm["AlarmActions"] == [{"Ref": "AlarmTopic"}]

    def watching(namespace: str, metric: str) -> list[dict[str, Any]]:
        return [a for a in alarms if a["Namespace"] == namespace and a["MetricName"] == metric]

    dlq = watching("AWS/SQS", "ApproximateNumberOfMessagesVisible")
    assert [d["Dimensions"] for d in dlq] == [
        [{"Name": "QueueName", "Value": {"Fn::GetAtt": [queue, "QueueName"]}}] for queue in ("WorkerDeadLetterQueue", "TriggerDeadLetterQueue")
    ]
    assert {(d["Threshold"], d["ComparisonOperator"]) for d in dlq} == {(0, "GreaterThanThreshold")}

    api5xx = watching("AWS/ApiGateway", "5XXError")
    assert len(api5xx) == 1
    api_name = template["Resources"]["RouterApi"]["Properties"]["Name"]
    assert api5xx[0]["Dimensions"] == [{"Name": "ApiName", "Value": api_name}, {"Name": "Stage", "Value": {"Ref": "StageName"}}]

    for metric in ("Errors", "Throttles"):
        watched = {a["Dimensions"][0]["Value"]["Ref"] for a in watching("AWS/Lambda", metric)}
        assert watched == set(HANDLERS), metric


def test_outputs_name_everything_an_operator_needs(template: dict[str, Any]) -> None:
    outputs = template["Outputs"]
    for key in (
        "ApiUrl", "ConfigUri", "JobTableName", "ArtifactsBucketName", "JobsBucketName", "ApiFunctionName",
        "WorkerFunctionName", "EventsFunctionName", "SweeperFunctionName", "WorkerDeadLetterQueueUrl",
        "SageMakerExecutionRoleArn", "ModelDeployerPolicyArn", "AsyncInferenceTopicArn",
        "TriggerFunctionName", "TriggerDeadLetterQueueUrl", "JobNotificationTopicArn",
    ):
        assert key in outputs, key
    for name in HANDLERS:
        assert outputs[f"{name}Name"]["Value"] == {"Ref": name}


# ---------------------------------------------------------------- the example parameters


def test_example_parameters_are_template_parameters_with_valid_values(template: dict[str, Any]) -> None:
    params = template["Parameters"]
    example = json.loads(PARAMETERS_EXAMPLE.read_text())
    assert example, "the example lists parameters"
    for item in example:
        key, value = item["ParameterKey"], item["ParameterValue"]
        assert key in params, key
        spec = params[key]
        assert isinstance(value, str), key  # CloudFormation takes every value as a string
        if "AllowedValues" in spec:
            assert value in [str(v) for v in spec["AllowedValues"]], key
        if spec["Type"] == "Number":
            assert spec.get("MinValue", float("-inf")) <= float(value) <= spec.get("MaxValue", float("inf")), key
        if "AllowedPattern" in spec:
            assert re.fullmatch(spec["AllowedPattern"], value), key
