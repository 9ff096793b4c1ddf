"""Replaying a real slurmrestd's captured answers (one directory of `tests/data/slurm-*`): the files
`capture.sh` and `capture_converged.py` wrote there, read back, served to a RestdTransport through
httpx's MockTransport, and the Submission converged built when it made them."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from converged_bridge.api.slurmcluster import SlurmClusterSpec
from converged_bridge.api.workflowstep import WorkflowStep
from converged_bridge.slurm.batch_script import build_batch_options, build_batch_script
from converged_bridge.slurm.restd import RestdTransport
from converged_bridge.slurm.transport import Submission

DATA = Path(__file__).resolve().parents[1] / "data"


def read(path: Path) -> tuple[int, Any]:
    """(HTTP status, body) of a captured answer; files wrap every non-200 answer."""
    doc = json.loads(path.read_text())
    if isinstance(doc, dict) and "http_status" in doc:
        return doc["http_status"], doc["body"]
    return 200, doc


def served_by(routes: dict[tuple[str, str], Path]) -> Callable[[httpx.Request], httpx.Response]:
    """A MockTransport handler answering each (method, path) with one captured answer."""

    def handle(request: httpx.Request) -> httpx.Response:
        status, doc = read(routes[(request.method, request.url.path)])
        return httpx.Response(status, json=doc)

    return handle


class Captures:
    """One server's captures, in `directory`."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def body(self, name: str) -> Any:
        return read(self.directory / name)[1]

    def submission(self, key: str) -> Submission:
        """The Submission capture_converged.py built for `key` ("v0.0.42-gpu"), rebuilt from its inputs."""
        inputs = json.loads((self.directory / "converged-submit-steps.json").read_text())[key]
        step = WorkflowStep.model_validate(inputs["step"])
        cluster = SlurmClusterSpec.model_validate(inputs["cluster"])
        uid, log_dir = inputs["step"]["metadata"]["uid"], inputs["log_dir"]
        return Submission(
            script=build_batch_script(step, cluster, uid=uid, log_dir=log_dir),
            options=build_batch_options(step, cluster, uid=uid, log_dir=log_dir),
            working_dir=inputs["working_dir"],
            user=inputs["user"],
        )

    def transport(self, routes: dict[tuple[str, str], Path], version: str | None = None) -> RestdTransport:
        """A RestdTransport that negotiates (or is pinned to `version`) against this server's own
        /openapi/v3 and is answered from `routes`."""
        routes = {("GET", "/openapi/v3"): self.directory / "restd-openapi-v3.json", **routes}
        client = httpx.Client(base_url="http://restd", transport=httpx.MockTransport(served_by(routes)))
        return RestdTransport(
            "http://restd",
            lambda user: "token",
            service_user="root",
            api_version=version,
            client=client,
            attempts=1,
        )
