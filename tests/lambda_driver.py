"""Runs inside the Lambda-like sandbox (tests/lambda_sandbox.py), under the runtime's own Python
with -I -S: what Lambda's bootstrap does for one function instance. sys.path is the task root, then
the runtime's boto3; the handler module is imported once (the cold start) and called for each
event in order. Prints one JSON document: the responses, and where every loaded module came from.

argv: TASK_ROOT BOTO3_DIR STEPS_JSON. Stdlib only until the handler is imported.
"""

import json
import os
import sys
import time
from pathlib import Path


class LambdaContext:
    """The attributes of Lambda's context object that handlers and Powertools read."""

    def __init__(self, request_id, timeout_s):
        self.aws_request_id = request_id
        self.function_name = os.environ["AWS_LAMBDA_FUNCTION_NAME"]
        self.function_version = "$LATEST"
        self.memory_limit_in_mb = int(os.environ["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"])
        self.invoked_function_arn = f"arn:aws:lambda:us-east-1:123456789012:function:{self.function_name}"
        self.log_group_name = f"/aws/lambda/{self.function_name}"
        self.log_stream_name = "sandbox"
        self._deadline = time.monotonic() + timeout_s

    def get_remaining_time_in_millis(self):
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def _task_root_is_read_only(task):
    try:
        Path(task, ".write-probe").write_text("x")
    except OSError:
        return True
    return False


def main():
    task, boto_dir, steps_file = sys.argv[1:4]
    sys.path[:0] = [task, boto_dir]
    spec = json.loads(Path(steps_file).read_text())
    module_name, _, attr = spec["handler"].rpartition(".")
    started = time.monotonic()
    module = __import__(module_name, fromlist=[attr])
    handler = getattr(module, attr)
    responses = []
    for i, step in enumerate(spec["events"]):
        responses.append(handler(step, LambdaContext(f"sandbox-{i}", spec["timeout_s"])))
    origins = {}
    for name, mod in list(sys.modules.items()):
        path = getattr(mod, "__file__", None)
        if path and "." not in name:
            origins[name] = path
    print(json.dumps({
        "responses": responses,
        "origins": origins,
        "sys_path": sys.path,
        "stdlib": str(Path(os.__file__).parent),
        "task_root_read_only": _task_root_is_read_only(task),
        "tmp_writable": os.access("/tmp", os.W_OK),
        "seconds": time.monotonic() - started,
    }))


if __name__ == "__main__":
    main()
