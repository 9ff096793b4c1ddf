#!/usr/bin/env python3
"""Helper of capture.sh: submits the jobs and writes the captured files (stdlib only).

Runs on the host. CLI commands run inside the chroot (`chroot ROOT env -i ... squeue --json`),
REST calls go to slurmrestd on loopback. Tokens are minted with `scontrol token` inside the chroot
and only kept in memory; capture.sh greps the output for `eyJ` afterwards.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

VERSIONS: tuple[str, ...] = ()  # set from --versions (capture.sh: every data_parser slurmrestd loads)
COMMENT = "converged:0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"
SHARED = "/var/lib/capture/shared"  # inside the chroot
ENV_ARRAY = ["PATH=/usr/bin:/bin", "CONVERGED_STEP_UID=0f1e2d3c"]
FINAL = {
    "COMPLETED",
    "FAILED",
    "CANCELLED",
    "TIMEOUT",
    "NODE_FAIL",
    "OUT_OF_MEMORY",
    "PREEMPTED",
    "BOOT_FAIL",
    "DEADLINE",
}
SACCT_FIELDS = (
    "JobID,JobName,Partition,Account,User,State,ExitCode,DerivedExitCode,Elapsed,Start,End,"
    "NodeList,AllocTRES,Reason,Comment"
)
DIRECTIVE_SCRIPT = (
    "#!/bin/bash\n"
    "#SBATCH --comment=from-directive\n"
    "#SBATCH --time=7\n"
    "#SBATCH --job-name=from-directive-name\n"
    "echo directive-check\n"
)


def log(msg: str) -> None:
    print(f"[capture.py {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class Capture:
    def __init__(self, root: str, out: Path, restd: str, cluster: str) -> None:
        self.root = root
        self._user_tokens: dict[str, str] = {}
        self.out = out
        self.restd = restd.rstrip("/")
        self.cluster = cluster
        self._token = ""
        self.notes: dict[str, object] = {}

    # ------------------------------------------------------------ helpers

    def sh(self, *argv: str, check: bool = True) -> str:
        cmd = [
            "chroot",
            self.root,
            "/usr/bin/env",
            "-i",
            "PATH=/usr/sbin:/usr/bin:/sbin:/bin",
            "HOME=/root",
            "LANG=C.UTF-8",
            *argv,
        ]
        cp = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        if check and cp.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} failed ({cp.returncode}): {cp.stderr.strip()}")
        return cp.stdout if cp.returncode == 0 else cp.stdout + cp.stderr

    def token(self) -> str:
        if not self._token:
            out = self.sh("scontrol", "token", "username=root", "lifespan=7200")
            self._token = next(
                ln.split("=", 1)[1].strip() for ln in out.splitlines() if ln.startswith("SLURM_JWT=")
            )
        return self._token

    def user_token(self, user: str) -> str:
        if user == "root":
            return self.token()
        if user not in self._user_tokens:
            out = self.sh("scontrol", "token", f"username={user}", "lifespan=7200")
            self._user_tokens[user] = next(
                ln.split("=", 1)[1].strip() for ln in out.splitlines() if ln.startswith("SLURM_JWT=")
            )
        return self._user_tokens[user]

    def http(
        self, method: str, path: str, body: object = None, token: str | None = None, user: str = "root"
    ) -> tuple[int, object]:
        headers = {
            "X-SLURM-USER-NAME": user,
            "X-SLURM-USER-TOKEN": token if token is not None else self.user_token(user),
        }
        data = None
        if body is not None:
            headers["Content-Type"] = "application/json"
            data = json.dumps(body).encode()
        req = urllib.request.Request(self.restd + path, data=data, method=method, headers=headers)  # noqa: S310 - loopback slurmrestd of the capture rig
        try:
            with urllib.request.urlopen(req, timeout=60) as r:  # noqa: S310 - loopback URL
                status, raw = r.status, r.read()
        except urllib.error.HTTPError as e:
            status, raw = e.code, e.read()
        text = raw.decode("utf-8", "replace")
        try:
            return status, json.loads(text) if text.strip() else None
        except ValueError:
            return status, text

    def save(self, name: str, data: object) -> None:
        path = self.out / name
        if isinstance(data, str):
            path.write_text(data)
        else:
            path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
        log(f"wrote {name}")

    def rest(
        self,
        name: str | None,
        method: str,
        path: str,
        body: object = None,
        token: str | None = None,
        user: str = "root",
    ) -> tuple[int, object]:
        status, resp = self.http(method, path, body, token, user)
        if name:
            self.save(name, resp if status == 200 else {"http_status": status, "body": resp})
        return status, resp

    def cli_json(self, name: str, *argv: str) -> object:
        out = self.sh(*argv)
        data = json.loads(out)
        self.save(name, data)
        return data

    def sbatch(self, name: str, *args: str, wrap: str) -> int:
        out = self.sh(
            "sbatch",
            "--parsable",
            f"--job-name={name}",
            f"--chdir={SHARED}",
            f"--output={SHARED}/capture-%j.log",
            *args,
            f"--wrap={wrap}",
        )
        jid = int(out.strip().split(";")[0])
        log(f"sbatch {name} -> {jid}")
        return jid

    def job(self, jid: int) -> dict[str, str]:
        out = self.sh("scontrol", "show", "job", "-o", str(jid), check=False)
        return dict(kv.split("=", 1) for kv in out.split() if "=" in kv)

    def wait(self, what: str, fn, timeout: float = 120, step: float = 1) -> None:
        end = time.time() + timeout
        while time.time() < end:
            if fn():
                return
            time.sleep(step)
        raise RuntimeError(f"timed out waiting for {what}")

    def wait_state(self, jids, states, timeout: float = 120) -> None:
        jids = list(jids)
        self.wait(
            f"jobs {jids} in {states}",
            lambda: all(self.job(j).get("JobState") in states for j in jids),
            timeout,
        )

    # ------------------------------------------------------------ scenario

    def run(self) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        version = self.sh("sinfo", "--version").strip()
        log(version)
        self.notes["slurm_version"] = version
        j: dict[str, int] = {}
        j["timeout"] = self.sbatch("cap-timeout", "-p", "cpu", "--time=1", wrap="sleep 300")
        j["completed"] = self.sbatch("cap-completed", "-p", "cpu", wrap="echo hello")
        j["exit3"] = self.sbatch("cap-failed-exit3", "-p", "cpu", wrap="exit 3")
        j["sigkill"] = self.sbatch("cap-failed-sigkill", "-p", "cpu", wrap="kill -9 $$")
        j["gpu"] = self.sbatch("cap-gpu", "-p", "gpu", "--gres=gpu:a100:1", wrap="echo $CUDA_VISIBLE_DEVICES")
        # MPI shape: 2 nodes, 4 tasks, two srun steps.
        j["mpi_completed"] = self.sbatch(
            "cap-mpi-completed",
            "-p",
            "cpu",
            "--nodes=2",
            "--ntasks=4",
            wrap="srun hostname; srun -l printenv SLURM_PROCID SLURM_NODEID",
        )
        self.wait_state([j["completed"], j["exit3"], j["sigkill"], j["gpu"], j["mpi_completed"]], FINAL)
        self.wait_state([j["timeout"]], {"RUNNING"})
        j["running_cpu"] = self.sbatch(
            "cap-running-cpu", "-p", "cpu", "-N1", "-c3", "--time=10", wrap="sleep 600"
        )
        self.wait_state([j["running_cpu"]], {"RUNNING"})
        j["mpi_running"] = self.sbatch(
            "cap-mpi-running", "-p", "cpu", "--nodes=2", "--ntasks=4", "--time=10", wrap="srun sleep 600"
        )
        j["running_gpu"] = self.sbatch(
            "cap-running-gpu", "-p", "gpu", "--gres=gpu:a100:2", "--time=10", wrap="sleep 600"
        )
        self.wait_state([j["running_cpu"], j["running_gpu"], j["mpi_running"]], {"RUNNING"})
        j["pending_resources"] = self.sbatch(
            "cap-pending-resources", "-p", "gpu", "--gres=gpu:a100:1", wrap="sleep 1"
        )
        j["pending_held"] = self.sbatch("cap-pending-held", "-p", "cpu", "--hold", wrap="true")
        j["pending_dependency"] = self.sbatch(
            "cap-pending-dependency", "-p", "cpu", f"--dependency=afterok:{j['running_cpu']}", wrap="true"
        )
        j["pending_array"] = self.sbatch(
            "cap-pending-array", "-p", "cpu", "--array=1-3", "--hold", wrap="true"
        )
        self.wait(
            "pending reasons",
            lambda: (
                self.job(j["pending_resources"]).get("Reason") == "Resources"
                and self.job(j["pending_dependency"]).get("Reason") == "Dependency"
            ),
            60,
        )
        self.notes["jobs"] = dict(j)

        # -------- CLI while running + pending
        self.cli_json("squeue.json", "squeue", "--json")
        self.cli_json("sinfo.json", "sinfo", "--json")
        # The CLI's default is the newest data_parser; --json=<v> picks another: also the oldest one.
        self.cli_json(f"squeue-{VERSIONS[0]}.json", "squeue", f"--json={VERSIONS[0]}")
        self.cli_json(f"sinfo-{VERSIONS[0]}.json", "sinfo", f"--json={VERSIONS[0]}")
        for what, name in (
            ("nodes", "scontrol-show-nodes.json"),
            ("partition", "scontrol-show-partition.json"),
        ):
            out = self.sh("scontrol", "show", what, "--json", check=False)
            try:
                self.save(name, json.loads(out))
                self.notes[f"scontrol show {what} --json"] = "supported"
            except ValueError:
                self.notes[f"scontrol show {what} --json"] = out.strip()[:300]
        self.cli_json(
            "scontrol-show-job-pending.json", "scontrol", "show", "job", "--json", str(j["pending_resources"])
        )
        self.cli_json(
            "scontrol-show-job-mpi-running.json", "scontrol", "show", "job", "--json", str(j["mpi_running"])
        )
        self.cli_json(
            "scontrol-show-job-gpu-completed.json", "scontrol", "show", "job", "--json", str(j["gpu"])
        )
        self.notes["scontrol show job -o (mpi running)"] = self.job(j["mpi_running"])
        self.notes["scontrol show job -o (gpu completed)"] = self.job(j["gpu"])

        # -------- REST
        self.rest("restd-openapi-v3.json", "GET", "/openapi/v3")
        self.update_time_experiment(j["pending_held"])
        for v in VERSIONS:
            self.rest_version(v, j)

        # -------- let everything finish
        self.sh("scancel", str(j["running_cpu"]), str(j["mpi_running"]))
        self.sh("scancel", str(j["pending_held"]), str(j["pending_dependency"]), str(j["pending_array"]))
        log("waiting for the TIMEOUT job and the rest to finish")
        self.wait(
            "queue to drain",
            lambda: not self.sh("squeue", "-h", "-t", "PD,R,CG,CF,S", "-o", "%i").strip(),
            300,
            3,
        )
        ids = sorted(set(j.values()) | set(self.notes.get("rest_jobs", {}).values()))
        id_list = ",".join(map(str, ids))

        nameless = {v for k, v in self.notes.get("rest_jobs", {}).items() if k.startswith("directives-")}

        def sacct_final() -> bool:
            # Right after a job ends slurmdbd may only have a placeholder row (name `allocation`, no
            # partition). A job submitted without a name keeps the name `allocation` for good.
            rows = self.sh(
                "sacct", "-n", "-P", "-X", "-j", id_list, "-o", "JobID,JobName,Partition,State"
            ).splitlines()
            seen = {}
            for r in rows:
                f = r.split("|")
                seen[int(f[0].split("_")[0].split(".")[0])] = f
            return all(
                i in seen and seen[i][2] and (i in nameless or seen[i][1] != "allocation") for i in ids
            )

        self.wait("sacct to have every job", sacct_final, 120, 3)
        time.sleep(2)
        self.cli_json("squeue-finished.json", "squeue", "--json")
        self.cli_json("sacct.json", "sacct", "--json", "-j", id_list)
        self.save("sacct-parsable2.txt", self.sh("sacct", "-P", "-j", id_list, "-o", SACCT_FIELDS))
        self.cli_json(f"sacct-{VERSIONS[0]}.json", "sacct", f"--json={VERSIONS[0]}", "-j", id_list)
        for v in VERSIONS:
            self.rest(f"restd-{v}-jobs-finished.json", "GET", f"/slurm/{v}/jobs")
            self.rest(f"restd-db{v}-jobs.json", "GET", f"/slurmdb/{v}/jobs")
            self.rest(f"restd-db{v}-job-failed.json", "GET", f"/slurmdb/{v}/job/{j['exit3']}")
        self.save("capture-notes.json", self.notes)

    def update_time_experiment(self, held: int) -> None:
        """GET /slurm/<v>/jobs?update_time=T before and after one job changed."""
        log("update_time experiment")
        time.sleep(3)
        t0 = int(time.time())
        time.sleep(2)
        seq: list[dict[str, object]] = []

        def probe(label: str, v: str, value: str, save_as: str | None) -> None:
            status, body = self.rest(save_as, "GET", f"/slurm/{v}/jobs?update_time={value}")
            b = body if isinstance(body, dict) else {}
            seq.append(
                {
                    "step": label,
                    "version": v,
                    "update_time": value,
                    "http_status": status,
                    "job_ids": [x.get("job_id") for x in b.get("jobs", [])],
                    "last_update": b.get("last_update"),
                    "errors": [e.get("description") for e in b.get("errors", [])],
                    "warnings": [w.get("description") for w in b.get("warnings", [])],
                    "body": None if isinstance(body, dict) else body,
                }
            )

        for v in VERSIONS:
            probe("nothing changed since T", v, str(t0), f"restd-{v}-jobs-update-time-unchanged.json")
        self.sh("scontrol", "update", f"jobid={held}", "comment=touched-for-update-time")
        time.sleep(1)
        for v in VERSIONS:
            probe(
                f"after `scontrol update jobid={held} comment=...`",
                v,
                str(t0),
                f"restd-{v}-jobs-update-time-changed.json",
            )
        for v in reversed(VERSIONS):
            probe("repeat, newest version first", v, str(t0), None)
        for v in VERSIONS:
            probe("update_time=1 (epoch start)", v, "1", None)
            probe("update_time=now (string)", v, "now", None)
        jobs_now = [x["job_id"] for x in self.http("GET", f"/slurm/{VERSIONS[-1]}/jobs")[1].get("jobs", [])]
        self.save(
            "update-time-experiment.json",
            {"T": t0, "changed_job": held, "all_job_ids": jobs_now, "requests": seq},
        )

    def rest_version(self, v: str, j: dict[str, int]) -> None:
        log(f"REST {v}")
        p = f"/slurm/{v}"
        self.rest(f"restd-{v}-ping.json", "GET", f"{p}/ping")
        self.rest(f"restd-{v}-diag.json", "GET", f"{p}/diag")
        self.rest(f"restd-{v}-jobs.json", "GET", f"{p}/jobs")
        self.rest(f"restd-{v}-job-running-gpu.json", "GET", f"{p}/job/{j['running_gpu']}")
        self.rest(f"restd-{v}-job-pending.json", "GET", f"{p}/job/{j['pending_resources']}")
        self.rest(f"restd-{v}-job-mpi-running.json", "GET", f"{p}/job/{j['mpi_running']}")
        self.rest(f"restd-{v}-job-mpi-completed.json", "GET", f"{p}/job/{j['mpi_completed']}")
        self.rest(f"restd-{v}-job-gpu-completed.json", "GET", f"{p}/job/{j['gpu']}")
        self.rest(f"restd-{v}-job-unknown-error.json", "GET", f"{p}/job/999999")
        self.rest(f"restd-{v}-nodes.json", "GET", f"{p}/nodes")
        self.rest(f"restd-{v}-partitions.json", "GET", f"{p}/partitions")
        self.rest(f"restd-db{v}-diag.json", "GET", f"/slurmdb/{v}/diag")

        req = {
            "script": "#!/bin/bash\necho from-rest\n",
            "job": {
                "name": f"cap-rest-submit-{v}",
                "partition": "cpu",
                "current_working_directory": SHARED,
                "standard_output": f"{SHARED}/capture-%j.log",
                "environment": ENV_ARRAY,
                "comment": COMMENT,
            },
        }
        self.save(f"restd-{v}-job-submit-request.json", req)
        status, resp = self.rest(f"restd-{v}-job-submit.json", "POST", f"{p}/job/submit", req)
        rest_jobs = self.notes.setdefault("rest_jobs", {})
        if status == 200 and isinstance(resp, dict):
            jid = resp["job_id"]
            rest_jobs[f"submit-{v}"] = jid
            self.wait_state([jid], FINAL, 60)
            self.rest(f"restd-{v}-job-submitted-completed.json", "GET", f"{p}/job/{jid}")

        dreq = {
            "script": DIRECTIVE_SCRIPT,
            "job": {
                "partition": "cpu",
                "current_working_directory": SHARED,
                "standard_output": f"{SHARED}/capture-%j.log",
                "environment": ENV_ARRAY,
            },
        }
        self.save(f"restd-{v}-job-submit-directives-request.json", dreq)
        status, resp = self.rest(f"restd-{v}-job-submit-directives.json", "POST", f"{p}/job/submit", dreq)
        if status == 200 and isinstance(resp, dict):
            jid = resp["job_id"]
            rest_jobs[f"directives-{v}"] = jid
            time.sleep(1)
            self.rest(f"restd-{v}-job-directives.json", "GET", f"{p}/job/{jid}")
            sj = self.job(jid)
            self.notes[f"directives-{v}"] = {
                k: sj.get(k) for k in ("JobId", "JobName", "TimeLimit", "Comment", "JobState")
            }

        bad = json.loads(json.dumps(req))
        bad["job"]["partition"] = "nosuch"
        self.rest(f"restd-{v}-job-submit-error-unknown-partition.json", "POST", f"{p}/job/submit", bad)
        noenv = json.loads(json.dumps(req))
        del noenv["job"]["environment"]
        status, resp = self.rest(
            f"restd-{v}-job-submit-no-environment.json", "POST", f"{p}/job/submit", noenv
        )
        if status == 200 and isinstance(resp, dict) and resp.get("job_id"):
            rest_jobs[f"no-environment-{v}"] = resp["job_id"]
        self.rest(f"restd-{v}-error-bad-token.json", "GET", f"{p}/jobs", token="not-a-valid-token")

        if v == VERSIONS[-1]:
            target = j["running_gpu"]
        else:
            target = self.sbatch(f"cap-delete-{v}", "-p", "cpu", "--hold", wrap="true")
            rest_jobs[f"delete-{v}"] = target
        self.rest(f"restd-{v}-job-cancel.json", "DELETE", f"{p}/job/{target}")
        self.notes[f"delete-{v}"] = target
        # DELETE outcomes: a job that already finished, an unknown id, another user's (root's) job.
        self.rest(f"restd-{v}-job-cancel-finished.json", "DELETE", f"{p}/job/{j['completed']}")
        self.rest(f"restd-{v}-job-cancel-unknown.json", "DELETE", f"{p}/job/999999")
        self.rest(
            f"restd-{v}-job-cancel-denied.json", "DELETE", f"{p}/job/{j['pending_held']}", user="nobody"
        )
        if self.job(j["pending_held"]).get("JobState") != "PENDING":
            raise RuntimeError(f"job {j['pending_held']} was cancelled by user nobody through {v}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", required=True)
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--restd", required=True)
    ap.add_argument("--cluster", required=True)
    ap.add_argument("--versions", required=True, help="comma-separated data_parser versions, oldest first")
    a = ap.parse_args()
    global VERSIONS
    VERSIONS = tuple(a.versions.split(","))
    Capture(a.root, a.out, a.restd, a.cluster).run()


if __name__ == "__main__":
    main()
