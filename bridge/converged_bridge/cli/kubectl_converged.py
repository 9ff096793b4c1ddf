"""`kubectl converged logs STEP`: a WorkflowStep's output, wherever the step ran.
`kubectl converged report RUN > run.html`: a run's report (DAG, timeline, estimate beside measure).

Installed as the executable `kubectl-converged`, which kubectl finds on PATH as a plugin.
Slurm-backed steps: the log file from status.logPath when this machine can read it (a shared
filesystem), else the tail the controller kept in status.logTail. Kubernetes-backed steps: the logs
of the pods of the step's Job.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from converged_bridge.api.workflowstep import BackendKind, WorkflowStep
from converged_bridge.cli.report import NoSuchRun, read_run_report
from converged_bridge.errors import BackendError
from converged_bridge.kube.core import KubeCore, NotFound, current_namespace, load_api_client
from converged_bridge.kube.objects import KubeObjects
from converged_bridge.kube.pods import pod_log, pod_names
from converged_bridge.kube.steps import WorkflowSteps
from converged_bridge.logfiles import read_log_tail
from converged_bridge.timing import utc_now

FULL_LOG = 1 << 30


def step_logs(objects: KubeObjects, step: WorkflowStep, tail: int | None) -> tuple[str, str | None]:
    """(log text, a note for stderr) for `step`."""
    ref = step.status.backend_ref
    if ref is None:
        return "", f"step has no backend job yet (phase {step.status.phase or 'Pending'})"
    if ref.kind == BackendKind.SLURM_JOB:
        if step.status.log_path:
            text = read_log_tail(step.status.log_path, limit=FULL_LOG)
            if text is not None:
                return _tail(text, tail), None
        kept = step.status.log_tail or ""
        return (
            _tail(kept, tail),
            f"{step.status.log_path or 'the log file'} is not readable here; "
            "showing the tail kept in the step's status",
        )
    namespace = step.metadata.namespace or "default"
    pods = pod_names(objects, namespace, f"job-name={ref.name}")
    if not pods:
        return _tail(
            step.status.log_tail or "", tail
        ), f"no pods left for {ref.display}; showing the kept tail"
    return "".join(pod_log(objects, namespace, pod, tail) for pod in pods), None


def _tail(text: str, lines: int | None) -> str:
    if not lines:
        return text
    return "".join(text.splitlines(keepends=True)[-lines:])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="kubectl converged", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--kubeconfig")
    sub = parser.add_subparsers(dest="command", required=True)
    logs = sub.add_parser("logs", help="print a WorkflowStep's output")
    logs.add_argument("step", help="WorkflowStep name")
    logs.add_argument("-n", "--namespace")
    logs.add_argument("--tail", type=int, help="only the last N lines")
    report = sub.add_parser(
        "report", help="print a run's report: one self-contained HTML page (DAG, timeline, figures)"
    )
    report.add_argument("run", help="run id (the label converged.dev/run of its WorkflowSteps)")
    report.add_argument("-n", "--namespace")
    report.add_argument("--summary", action="store_true", help="the figures as text instead")
    args = parser.parse_args(argv)
    namespace = args.namespace or current_namespace(args.kubeconfig)
    if args.command == "report":
        return run_report(args.kubeconfig, namespace, args.run, args.summary)
    try:
        objects = KubeObjects(KubeCore(load_api_client(args.kubeconfig), field_manager="kubectl-converged"))
        step = WorkflowStep.model_validate(WorkflowSteps(objects).get_step(namespace, args.step))
        text, note = step_logs(objects, step, args.tail)
    except NotFound:
        print(f"error: workflowstep {args.step!r} not found in namespace {namespace!r}", file=sys.stderr)
        return 1
    except BackendError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    if note:
        print(f"note: {note}", file=sys.stderr)
    sys.stdout.write(text)
    return 0


def run_report(kubeconfig: str | None, namespace: str, run_id: str, summary: bool) -> int:
    try:
        objects = KubeObjects(KubeCore(load_api_client(kubeconfig), field_manager="kubectl-converged"))
        text = read_run_report(WorkflowSteps(objects), namespace, run_id, now=utc_now(), summary=summary)
    except (NoSuchRun, BackendError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
