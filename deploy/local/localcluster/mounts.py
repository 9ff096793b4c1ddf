"""Mount points this cluster leaves behind (pod volumes, network namespaces, build chroots) and
their removal. Only mounts under a directory we own are ever touched."""

from __future__ import annotations

import re
from pathlib import Path

from .procs import run

_ESCAPE = re.compile(r"\\([0-7]{3})")


def parse_mountinfo(text: str) -> list[Path]:
    """Mount points listed in a /proc/<pid>/mountinfo text, in the order the kernel lists them."""
    points = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) > 4:
            points.append(Path(_ESCAPE.sub(lambda m: chr(int(m.group(1), 8)), fields[4])))
    return points


def under(root: Path, points: list[Path]) -> list[Path]:
    """The mount points at or below `root`, deepest (last mounted) first: the order to unmount them."""
    inside = [p for p in points if p == root or root in p.parents]
    return list(reversed(inside))


def read_mounts() -> list[Path]:
    return parse_mountinfo(Path("/proc/self/mountinfo").read_text())


def unmount_under(root: Path) -> list[Path]:
    """Unmount everything at or below `root` (lazily if busy); returns what was unmounted."""
    root = root.resolve()  # the kernel lists real paths: /run/netns/x, not /var/run/netns/x
    done: list[Path] = []
    for _ in range(5):  # a mount may hide another mounted on the same point
        points = under(root, read_mounts())
        if not points:
            break
        for point in points:
            if run(["umount", str(point)], check=False).returncode != 0:
                run(["umount", "-l", str(point)], check=False)
            done.append(point)
    return done
