"""The real node's pure builders: kubelet and containerd configuration, the CNI network, the OCI
packing of the step/pause images, their recipe hashes, and the mount bookkeeping of `down`."""

from __future__ import annotations

import hashlib
import json
import os
import tarfile
import tomllib
from pathlib import Path
from typing import Any

import pytest

from localcluster import containerd, images, kubelet, mounts, oci
from localcluster.layout import Layout, Ports, read_versions


@pytest.fixture
def layout(tmp_path: Path) -> Layout:
    return Layout(root=tmp_path / "local", cache=tmp_path / "cache", ports=Ports(), versions=read_versions())


def test_kubelet_config_cgroup_v1_cgroupfs_on_loopback_with_our_certs(layout: Layout) -> None:
    cfg: dict[str, Any] = kubelet.build_config(layout)
    assert cfg["kind"] == "KubeletConfiguration"
    assert cfg["failCgroupV1"] is False
    assert cfg["cgroupDriver"] == "cgroupfs"
    assert cfg["failSwapOn"] is False
    assert cfg["address"] == cfg["healthzBindAddress"] == "127.0.0.1"
    assert cfg["readOnlyPort"] == 0
    assert cfg["containerRuntimeEndpoint"] == f"unix://{layout.root / 'containerd' / 'containerd.sock'}"
    assert cfg["authentication"]["x509"]["clientCAFile"] == str(layout.pki / "ca.crt")
    assert cfg["authentication"]["anonymous"]["enabled"] is False
    assert cfg["authorization"]["mode"] == "Webhook"
    assert Path(cfg["tlsCertFile"]).parent == layout.pki
    # the step and pause images cannot be pulled again: image GC must never remove them
    assert cfg["imageGCHighThresholdPercent"] == 100
    assert cfg["makeIPTablesUtilChains"] is False  # no rules left on the host's iptables


def test_kubelet_node_identity() -> None:
    assert kubelet.NODE == "real-node-0"
    assert kubelet.NODE_LABELS == {"converged.dev/node-kind": "real"}
    assert kubelet.NODE_ADDRESSES == [{"type": "InternalIP", "address": "127.0.0.1"}]


def test_containerd_config_uses_only_our_socket_and_directories(layout: Layout) -> None:
    p = containerd.paths(layout)
    cfg = tomllib.loads(containerd.build_config(p, "localhost/converged/pause:abc"))
    assert cfg["version"] == 2
    assert cfg["grpc"]["address"] == str(p.socket)
    assert not cfg["grpc"]["address"].startswith("/run/containerd")
    assert cfg["root"] == str(p.root) and cfg["state"] == str(p.state)
    for path in (cfg["root"], cfg["state"], cfg["ttrpc"]["address"]):
        assert path.startswith(str(layout.root) + "/")
    cri = cfg["plugins"]["io.containerd.grpc.v1.cri"]
    assert cri["sandbox_image"] == "localhost/converged/pause:abc"
    runc = cri["containerd"]["runtimes"]["runc"]
    assert runc["runtime_type"] == "io.containerd.runc.v2"
    assert runc["options"]["SystemdCgroup"] is False
    assert runc["options"]["Root"].startswith(str(p.state))
    assert cri["cni"] == {"bin_dir": "/usr/lib/cni", "conf_dir": str(p.cni_conf), "max_conf_num": 1}


def test_cni_network_is_bridge_host_local_portmap_and_keeps_state_with_us(layout: Layout) -> None:
    p = containerd.paths(layout)
    net: dict[str, Any] = containerd.build_cni_config(p)
    assert [plugin["type"] for plugin in net["plugins"]] == ["bridge", "portmap"]
    bridge = net["plugins"][0]
    assert bridge["bridge"] == containerd.BRIDGE
    # not a gateway, nothing masqueraded: the host does not route for its pods
    assert bridge["isGateway"] is False and bridge["ipMasq"] is False
    assert bridge["ipam"]["type"] == "host-local"
    assert bridge["ipam"]["dataDir"] == str(p.ipam)
    # the host's address on the bridge is reserved as the range's gateway, never given to a pod
    assert bridge["ipam"]["ranges"] == [
        [{"subnet": containerd.POD_SUBNET, "gateway": containerd.HOST_ADDRESS}]
    ]
    assert "routes" not in bridge["ipam"]


def _rootfs(base: Path) -> Path:
    root = base / "rootfs"
    for d in ("bin", "dev", "etc", "proc", "usr/lib"):
        (root / d).mkdir(parents=True)
    (root / "bin" / "tool").write_text("#!/bin/sh\necho hi\n")
    (root / "bin" / "tool").chmod(0o755)
    (root / "etc" / "os-release").write_text("ID=debian\n")
    (root / "usr" / "lib" / "hard").write_text("same inode")
    os.link(root / "usr" / "lib" / "hard", root / "usr" / "lib" / "hard2")
    (root / "lib").symlink_to("usr/lib")
    (root / "dev" / "leftover").write_text("a device node would be here")
    os.utime(root / "etc" / "os-release", (1_700_000_000.7, 1_700_000_000.7))
    return root


def _members(archive: Path) -> dict[str, bytes]:
    with tarfile.open(archive) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}


def test_oci_archive_is_deterministic_and_self_consistent(tmp_path: Path) -> None:
    root = _rootfs(tmp_path)
    spec = oci.ImageSpec(env=("PATH=/usr/bin",), cmd=("/bin/tool",), labels={"dev.converged.recipe": "x"})
    refs = ["localhost/converged/t:abc", "localhost/converged/t:local"]
    first, second = tmp_path / "a.tar", tmp_path / "b.tar"
    digest = oci.write_archive(root, spec, refs, first)
    tool = root / "bin" / "tool"
    mtime_ns = tool.stat().st_mtime_ns
    tool.chmod(0o755)  # a new ctime and atime must not matter; the mtime is content
    os.utime(tool, ns=(mtime_ns + 5_000_000_000, mtime_ns))
    assert oci.write_archive(root, spec, refs, second) == digest
    assert first.read_bytes() == second.read_bytes()

    files = _members(first)
    index = json.loads(files["index.json"])
    assert [m["annotations"][oci.CONTAINERD_NAME_ANNOTATION] for m in index["manifests"]] == refs
    assert {m["digest"] for m in index["manifests"]} == {digest}
    for name, data in files.items():  # every blob is stored under its own digest
        if name.startswith("blobs/sha256/"):
            assert hashlib.sha256(data).hexdigest() == name.rsplit("/", 1)[1]
    manifest = json.loads(files[f"blobs/sha256/{digest[7:]}"])
    config = json.loads(files[f"blobs/sha256/{manifest['config']['digest'][7:]}"])
    assert config["rootfs"]["diff_ids"] == [manifest["layers"][0]["digest"]]
    assert manifest["layers"][0]["mediaType"] == oci.LAYER_MEDIA_TYPE
    assert config["config"]["Cmd"] == ["/bin/tool"] and config["config"]["Env"] == ["PATH=/usr/bin"]

    layer = tmp_path / "layer.tar"
    layer.write_bytes(files[f"blobs/sha256/{manifest['layers'][0]['digest'][7:]}"])
    with tarfile.open(layer) as tar:
        entries = {m.name: m for m in tar.getmembers()}
    assert list(entries) == sorted(entries)
    assert "dev" in entries and "dev/leftover" not in entries  # the runtime provides /dev
    assert entries["lib"].issym() and entries["lib"].linkname == "usr/lib"
    assert entries["usr/lib/hard2"].islnk() and entries["usr/lib/hard2"].linkname == "usr/lib/hard"
    assert entries["etc/os-release"].mtime == 1_700_000_000  # kept (pyc files check it), whole seconds
    assert all(m.uname == "" and m.gname == "" for m in entries.values())


def test_recipe_hash_follows_the_recipe_files_only() -> None:
    files = {"debian-packages.txt": b"python3\n", "requirements.txt": b"snakemake==9.27.*\n"}
    same = images.recipe_hash("step", dict(files))
    assert same == images.recipe_hash("step", dict(reversed(list(files.items()))))
    assert images.recipe_hash("step", {**files, "requirements.txt": b"snakemake==9.28.*\n"}) != same
    assert images.recipe_hash("pause", files) != same
    assert len(same) == 16


def test_recipes_in_the_repository_define_both_images(layout: Layout) -> None:
    step = images.read_recipe("step")
    assert {"debian-packages.txt", "requirements.txt"} <= set(step)
    assert b"snakemake==9." in step["requirements.txt"]
    assert "pause.c" in images.read_recipe("pause")
    img = images.step(layout)
    assert img.ref == f"localhost/converged/step:{img.tag}"
    assert img.stable_ref == "localhost/converged/step:local"
    assert img.dir == layout.cache / "images" / f"step-{img.tag}"
    assert images.env(layout)["CONVERGED_STEP_IMAGE_DIR"] == str(layout.root / "images" / "step")


def test_mountinfo_parsing_and_unmount_order() -> None:
    text = "\n".join(
        [
            "22 1 8:1 / / rw - ext4 /dev/vda rw",
            "30 22 0:5 / /var/lib/l/kubelet/pods/u/volumes/x rw - tmpfs tmpfs rw",
            "31 22 0:6 / /var/lib/l/containerd/state/a\\040b/rootfs rw - overlay overlay rw",
            "32 30 0:7 / /var/lib/l/kubelet/pods/u/volumes/x/sub rw - tmpfs tmpfs rw",
            "33 22 0:8 / /var/lib/l/kubelet-other rw - tmpfs tmpfs rw",
        ]
    )
    points = mounts.parse_mountinfo(text)
    assert Path("/var/lib/l/containerd/state/a b/rootfs") in points
    assert mounts.under(Path("/var/lib/l/kubelet"), points) == [
        Path("/var/lib/l/kubelet/pods/u/volumes/x/sub"),
        Path("/var/lib/l/kubelet/pods/u/volumes/x"),
    ]
