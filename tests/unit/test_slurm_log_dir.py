"""A Slurm step's log directory on the shared filesystem: made for its user, shared where the working
directory is shared, never handed from one user to another; one its user cannot write fails the step
before anything is submitted, saying what to change (before: the job died at once by signal 53, its log
unopenable, after the directory had been re-owned to another user's step).

Real directories under tmp_path, real users of every Debian system (`nobody`, `daemon`); changing owners
needs root, as the controller on a site's shared filesystem has.
"""

from __future__ import annotations

import os
import pwd
import stat
from pathlib import Path

import pytest

from converged_bridge.backends.slurm.files import prepare_dir, write_private_file
from tests.unit.test_backend_slurm_plan import CLUSTER_SPEC
from tests.unit.test_controller_cycle import controller_over, step_object

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0, reason="owners are changed as root, as the controller does"
)

A, B = pwd.getpwnam("nobody"), pwd.getpwnam("daemon")


def owner_mode(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_uid, stat.S_IMODE(st.st_mode)


def test_a_new_log_dir_belongs_to_the_steps_user(tmp_path: Path) -> None:
    logs = tmp_path / "flow/.converged/logs"
    assert prepare_dir(str(logs), A.pw_name) is None
    assert owner_mode(logs) == (A.pw_uid, 0o755)


def test_in_a_shared_working_dir_the_log_dir_is_shared_and_serves_every_user(tmp_path: Path) -> None:
    flow = tmp_path / "team"
    flow.mkdir()
    flow.chmod(0o1777)
    logs = flow / ".converged/logs"
    assert prepare_dir(str(logs), A.pw_name) is None
    assert owner_mode(logs) == (0, 0o1777) and owner_mode(logs.parent) == (0, 0o1777)
    assert prepare_dir(str(logs), B.pw_name) is None  # the second user's steps log there too
    assert owner_mode(logs) == (0, 0o1777)


def test_an_existing_dir_is_never_handed_to_another_user(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    assert prepare_dir(str(logs), A.pw_name) is None
    why = prepare_dir(str(logs), B.pw_name)
    assert owner_mode(logs) == (A.pw_uid, 0o755)  # still A's: A's running jobs keep their logs
    assert why is not None
    assert why.startswith(f"{logs} belongs to nobody (mode 0755): the Slurm user daemon cannot write")
    assert "chmod 1777" in why


def test_a_user_unknown_here_is_left_to_the_site(tmp_path: Path) -> None:
    assert prepare_dir(str(tmp_path / "logs"), "no-such-user-here") is None


def test_secrets_stay_private_inside_a_shared_log_dir(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    logs.chmod(0o1777)
    secret = logs / f".secrets-{A.pw_name}" / "u1.env"
    write_private_file(str(secret), "export K=v\n", A.pw_name)
    assert owner_mode(secret.parent) == (A.pw_uid, 0o700)
    assert owner_mode(secret) == (A.pw_uid, 0o600)


def test_a_step_whose_log_dir_its_user_cannot_write_fails_before_submission(tmp_path: Path) -> None:
    flow = tmp_path / "flow"
    (flow / ".converged/logs").mkdir(parents=True)  # root's, 0755: left by someone else
    spec = {**CLUSTER_SPEC, "userMapping": [{**CLUSTER_SPEC["userMapping"][0], "user": A.pw_name}]}
    step = step_object("s")
    step["spec"]["workingDir"] = str(flow)
    controller, kube, transport, _ = controller_over([step], [], tmp_path, spec)

    controller.poll_and_reconcile()
    assert transport.submitted == []
    status = kube.stored["s"]["status"]
    assert (status["phase"], status["reason"]) == ("Failed", "LogDirNotWritable")
    assert f"the Slurm user {A.pw_name} cannot write its job's log there" in status["message"]
