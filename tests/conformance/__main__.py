"""Snakemake's own test workflows through converged, as a site user: `python -m tests.conformance`
(make conformance). See this package's docstring; exit status 0 when every workflow that passes with
the local executor passes on each backend too, but those no remote executor can pass.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

from tests.conformance.runner import (
    MODES,
    NO_REMOTE_EXECUTOR,
    Outcome,
    cluster_env,
    make_user_dir,
    read_outcomes,
    run_all,
    user_snakemake_version,
    write_outcomes,
)
from tests.conformance.sdist import default_cache, fetch_snakemake_tests, find_workflows


def render_summary(version: str, found: int, outcomes: Sequence[Outcome], modes: Sequence[str]) -> str:
    """The counts per mode and every failure with its reason."""
    by_mode = {m: [o for o in outcomes if o.mode == m] for m in modes}
    lines = [f"snakemake {version}'s test workflows with expected results: {found}"]
    local = by_mode.get("local")
    if local is not None:
        passed = sum(o.passed for o in local)
        lines.append(f"  local executor: {passed} of {len(local)} pass on this machine")
    for mode in modes:
        if mode == "local":
            continue
        ran = by_mode[mode]
        passed = sum(o.passed for o in ran)
        design = sum(1 for o in ran if not o.passed and o.workflow in NO_REMOTE_EXECUTOR)
        seconds = sum(o.seconds for o in ran)
        lines.append(
            f"  converged, steps on {mode}: {passed} of {len(ran)} pass ({design} cannot by design), "
            f"{seconds:.0f} s of runs"
        )
    failed = [o for o in outcomes if not o.passed and o.mode != "local"]
    if failed:
        lines.append("failures:")
    for o in sorted(failed, key=lambda o: (o.mode, o.workflow)):
        why = NO_REMOTE_EXECUTOR.get(o.workflow)
        note = f" [no remote executor can pass it: {why}]" if why else ""
        lines.append(f"  {o.mode} {o.workflow}: {o.reason()}{note} ({o.log})")
    return "\n".join(lines) + "\n"


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--user", default="alice", help="the site user who runs them")
    parser.add_argument("--modes", default="local,slurm,kueue", help=f"of {', '.join(MODES)}")
    parser.add_argument("--only", default="", help="workflow names, comma-separated (default: all)")
    parser.add_argument("--version", default="", help="snakemake version (default: the user's snakemake)")
    parser.add_argument("--cache", type=Path, default=default_cache(), help="source distributions' cache")
    parser.add_argument("--base", type=Path, help="run directory (default: a new one of the user's)")
    parser.add_argument("--parallel", type=int, default=6, help="workflows at once (local: at most 2)")
    parser.add_argument(
        "--local-from",
        type=Path,
        help="an earlier run's results.json: its local pass stands for this one's (no local runs)",
    )
    parser.add_argument(
        "--pythonpath",
        default="",
        help="PYTHONPATH for the user's snakemake: a checkout's plugin and bridge, to try them before they "
        "are installed on the site (e.g. CHECKOUT/plugin:CHECKOUT/bridge)",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str]) -> int:
    args = parse_args(argv)
    modes = [m for m in args.modes.split(",") if m]
    unknown = set(modes) - set(MODES)
    if unknown:
        raise SystemExit(f"unknown modes: {', '.join(sorted(unknown))}")
    version = args.version or user_snakemake_version(args.user)
    workflows = find_workflows(fetch_snakemake_tests(version, args.cache))
    found = len(workflows)
    if args.only:
        names = set(args.only.split(","))
        workflows = [w for w in workflows if w.name in names]
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    base = (
        args.base
        or Path(cluster_env()["CONVERGED_SHARED_DIR"]) / "users" / args.user / f"conformance-{stamp}"
    )
    make_user_dir(base, args.user)
    print(f"snakemake {version}: {len(workflows)} workflows, {', '.join(modes)}, in {base}", flush=True)
    if args.local_from:
        print(f"the local pass of {args.local_from} stands for this one's", flush=True)

    def report(o: Outcome) -> None:
        with open(base / "outcomes.jsonl", "a") as out:  # as they end: a run cut short keeps them
            out.write(json.dumps(asdict(o)) + "\n")
        print(
            f"{o.mode:6} {'pass' if o.passed else 'FAIL'} {o.workflow} ({o.seconds:.0f} s) {o.reason()}",
            flush=True,
        )

    outcomes: list[Outcome] = []
    if args.local_from:
        outcomes = [o for o in read_outcomes(args.local_from) if o.mode == "local"]
        passed = {o.workflow for o in outcomes if o.passed}
        workflows = [w for w in workflows if w.name in passed]
        modes = ["local", *(m for m in modes if m != "local")]
    elif "local" in modes:
        local = min(2, args.parallel)  # the local executor uses the cores of this machine
        outcomes = run_all(
            [(w, "local") for w in workflows], base, user=args.user, parallel=local, report=report
        )
        workflows = [w for w, o in zip(workflows, outcomes, strict=True) if o.passed]
        write_outcomes(base / "results.json", outcomes)
    remote = [m for m in modes if m != "local"]
    outcomes += run_all(
        [(w, mode) for w in workflows for mode in remote],  # the backends side by side: runs mostly wait
        base,
        user=args.user,
        parallel=args.parallel,
        pythonpath=args.pythonpath or None,
        report=report,
    )
    write_outcomes(base / "results.json", outcomes)
    summary = render_summary(version, found, outcomes, modes)
    (base / "summary.txt").write_text(summary)
    print(summary, end="")
    missed = [
        o for o in outcomes if o.mode != "local" and not o.passed and o.workflow not in NO_REMOTE_EXECUTOR
    ]
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
