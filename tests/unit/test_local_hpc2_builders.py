"""The second local Slurm cluster's pure builders: its slurm.conf beside hpc1's, and the script that
puts a process into its root."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from localcluster.hpc2 import config, root, shape
from localcluster.layout import Layout, Ports, read_versions
from localcluster.slurm import config as hpc1_config


def layout(tmp_path: Path) -> Layout:
    return Layout(root=tmp_path / "state", cache=tmp_path / "cache", ports=Ports(), versions=read_versions())


def conf(text: str) -> dict[str, list[str]]:
    """slurm.conf as {key: [values]} (NodeName and PartitionName repeat)."""
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            out.setdefault(key, []).append(value)
    return out


def test_hpc2_runs_slurm_26_05_from_sid() -> None:
    assert read_versions()["SLURM_SID_VERSION"].startswith("26.05.")


def test_hpc2_shares_no_port_with_hpc1(tmp_path: Path) -> None:
    ports = dataclasses.asdict(Ports())
    hpc2 = {k: v for k, v in ports.items() if k.startswith("hpc2_")}
    others = {k: v for k, v in ports.items() if not k.startswith("hpc2_")}
    node_ports = {n.port for n in shape.nodes(layout(tmp_path))}
    hpc1_nodes = {Ports().slurmd_base + i for i in range(3)}
    daemons = {v for k, v in ports.items() if not k.endswith("slurmd_base")}
    assert set(hpc2.values()).isdisjoint(others.values())
    assert len(node_ports) == 3 and node_ports.isdisjoint({*hpc1_nodes, *daemons})
    assert len(set(ports.values())) == len(ports)


def test_hpc2_is_its_own_cluster_with_its_own_state(tmp_path: Path) -> None:
    lay = layout(tmp_path)
    one, two = conf(hpc1_config.slurm_conf(lay)), conf(config.slurm_conf(lay))
    assert two["ClusterName"] == ["hpc2"] != one["ClusterName"]
    for key in ("SlurmctldPort", "AccountingStoragePort", "StateSaveLocation", "SlurmdSpoolDir",
                "SlurmctldPidFile", "SlurmdPidFile", "AuthAltParameters"):  # fmt: skip
        assert one[key] != two[key], key
    assert two["SlurmctldPort"] == [str(lay.ports.hpc2_slurmctld)]
    assert all(str(lay.component_dir("hpc2")) in two[k][0] for k in ("StateSaveLocation", "SlurmdSpoolDir"))


def test_hpc2_layout_differs_from_hpc1(tmp_path: Path) -> None:
    two = conf(config.slurm_conf(layout(tmp_path)))
    partitions = {p.split()[0]: p for p in two["PartitionName"]}
    assert list(partitions) == ["cpu", "long", "bigmem"]
    assert "Nodes=h2n1,h2n2 Default=YES MaxTime=1-00:00:00" in partitions["cpu"]
    assert "Nodes=h2n1,h2n2 MaxTime=7-00:00:00" in partitions["long"]
    assert "Nodes=h2big MaxTime=2-00:00:00" in partitions["bigmem"]
    big = next(n for n in two["NodeName"] if n.startswith("h2big "))
    assert "RealMemory=257000" in big
    assert "GresTypes" not in two  # no GPUs on hpc2


def test_hpc2_accounting_uses_hpc1s_mariadb_with_a_database_of_its_own(tmp_path: Path) -> None:
    lay = layout(tmp_path)
    one = conf(hpc1_config.slurmdbd_conf(lay, "pw1"))
    two = conf(config.slurmdbd_conf(lay, "pw2"))
    assert two["StoragePort"] == one["StoragePort"] == [str(lay.ports.mariadb)]
    assert two["StorageLoc"] != one["StorageLoc"] and two["StorageUser"] != one["StorageUser"]
    assert two["DbdPort"] == [str(lay.ports.hpc2_slurmdbd)]


def spec(tmp_path: Path, tmp: Path | None = None) -> root.RootSpec:
    return root.root_spec(layout(tmp_path), tmp)


def test_enter_script_binds_then_pivots_into_a_read_only_root(tmp_path: Path) -> None:
    s = spec(tmp_path)
    lines = root.build_enter_script(s).splitlines()
    assert lines[0] == "set -e"
    pivot = lines.index("pivot_root . .")
    mounts = [i for i, line in enumerate(lines) if line.startswith("mount ")]
    assert mounts and max(mounts) < pivot  # everything bound before the root changes
    assert lines[pivot - 2] == 'mount -o remount,bind,ro "$r"'
    assert lines[pivot + 1] == "umount -l ."  # the host's root is detached
    assert lines[-1].startswith("exec /usr/bin/env -i PATH=")
    for path in (*s.binds, *s.ro_binds):
        assert f'mount --bind {path} "$r"{path}' in lines
        # a fresh machine's hpc2 starts before the images it binds exist
        assert lines.index(f"mkdir -p {path}") < lines.index(f'mount --bind {path} "$r"{path}')
    for path in s.ro_binds:
        assert f'mount -o remount,bind,ro "$r"{path}' in lines
    assert f'mount --bind {s.etc_slurm} "$r"/etc/slurm' in lines
    assert 'mount --bind /run/munge "$r/run/munge"' in lines  # one munged for both clusters
    assert 'mount --bind /etc/shadow "$r"/etc/shadow' in lines


def test_enter_script_fails_on_any_failed_mount(tmp_path: Path) -> None:
    """`set -e` ignores a failure inside an `&&` list: every command stands alone."""
    for line in root.build_enter_script(spec(tmp_path)).splitlines():
        assert "&&" not in line and "||" not in line.replace("] || :", ""), line


def test_enter_script_gives_a_node_its_own_tmp(tmp_path: Path) -> None:
    node_tmp = tmp_path / "tmp" / "h2n1"
    assert f'mount --bind {node_tmp} "$r/tmp"' in root.build_enter_script(spec(tmp_path, node_tmp))
    assert 'mount -t tmpfs -o mode=1777,size=256m tmpfs "$r/tmp"' in root.build_enter_script(spec(tmp_path))


def test_argv_runs_the_command_as_the_user_with_only_the_given_environment(tmp_path: Path) -> None:
    argv = root.build_argv(spec(tmp_path), ["sbatch", "--wrap", "true"], user=(1001, 1001), env={"A": "b"})
    assert argv[:5] == ["unshare", "--mount", "--propagation", "private", "--"]
    assert argv[5:7] == ["sh", "-c"] and argv[8] == "hpc2"
    assert argv[9:] == ["A=b", "setpriv", "--reuid=1001", "--regid=1001", "--init-groups", "--",
                        "sbatch", "--wrap", "true"]  # fmt: skip
