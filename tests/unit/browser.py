"""A real headless browser for tests: Chromium from Debian (tests/browser/ensure-chromium installs it;
`make unit` and `make test` run that first, and the first test that needs it runs it when pytest was
started some other way). No browser is a failure, never a skip."""

from __future__ import annotations

import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import pytest

ENSURE = Path(__file__).resolve().parents[1] / "browser" / "ensure-chromium"


def chromium() -> str:
    """Chromium's path, installed first when missing (however pytest was started: make, or directly)."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        ensured = subprocess.run([str(ENSURE)], capture_output=True, text=True, timeout=1800)
        found = shutil.which("chromium") or shutil.which("chromium-browser")
        if found is None:
            pytest.fail(
                f"Chromium is not installed and {ENSURE} could not install it:\n{ensured.stderr[-2000:]}"
            )
    return found


def run_chromium(page: Path, profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Headless Chromium on `page` (a local file) with its own profile directory; raises on failure."""
    cp = subprocess.run(
        [
            chromium(),
            "--headless",
            "--no-sandbox",  # tests run as root
            "--disable-gpu",
            "--no-first-run",
            "--disable-dev-shm-usage",
            f"--user-data-dir={profile}",
            *args,
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert cp.returncode == 0, cp.stderr[-3000:]
    return cp


def dump_dom(page: Path, profile: Path) -> str:
    """The DOM after the page loaded and its scripts ran."""
    return run_chromium(page, profile, "--dump-dom").stdout


def screenshot(page: Path, profile: Path, out: Path, size: tuple[int, int]) -> None:
    run_chromium(
        page, profile, "--hide-scrollbars", f"--window-size={size[0]},{size[1]}", f"--screenshot={out}"
    )


def read_png(path: Path) -> tuple[int, int, list[bytes]]:
    """Width, height and rows of RGB(A) pixels of an 8-bit PNG as Chromium writes it."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, chunks, header = 8, [], b""
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            header = body
        elif kind == b"IDAT":
            chunks.append(body)
        pos += 12 + length
    width, height, depth, color = struct.unpack(">IIBB", header[:10])
    assert depth == 8 and color in (2, 6), f"unexpected PNG format: depth {depth}, colour type {color}"
    bpp = 3 if color == 2 else 4
    raw = zlib.decompress(b"".join(chunks))
    stride = width * bpp
    rows: list[bytes] = []
    prev = bytearray(stride)
    for y in range(height):
        kind, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)])
        for i in range(stride):
            left = line[i - bpp] if i >= bpp else 0
            up, corner = prev[i], prev[i - bpp] if i >= bpp else 0
            if kind == 1:
                line[i] = (line[i] + left) & 0xFF
            elif kind == 2:
                line[i] = (line[i] + up) & 0xFF
            elif kind == 3:
                line[i] = (line[i] + (left + up) // 2) & 0xFF
            elif kind == 4:
                p = left + up - corner
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - corner)
                pred = left if pa <= pb and pa <= pc else up if pb <= pc else corner
                line[i] = (line[i] + pred) & 0xFF
        rows.append(bytes(line) if bpp == 3 else bytes(b for j, b in enumerate(line) if j % 4 != 3))
        prev = line
    return width, height, rows


def count_color(rows: list[bytes], rgb: str, tolerance: int = 6) -> int:
    """Pixels within `tolerance` of the colour `#rrggbb`."""
    want = bytes.fromhex(rgb.lstrip("#"))
    count = 0
    for row in rows:
        for i in range(0, len(row), 3):
            if all(abs(row[i + k] - want[k]) <= tolerance for k in range(3)):
                count += 1
    return count
