"""The runtime source cache moved where steps see it, on snakemake's own SourceCache."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from snakemake.sourcecache import SourceCache, infer_source_file

from snakemake_executor_plugin_converged.sources import share_runtime_source_cache


def test_a_wrapper_copy_a_step_waits_for_lands_in_the_workflow_directory(tmp_path: Path) -> None:
    home_cache = tmp_path / "home" / ".cache" / "snakemake"
    workdir = tmp_path / "workflow"
    wrapper = workdir / "wrapper.py"
    workdir.mkdir()
    wrapper.write_text("print('wrapped')\n")
    cache = SourceCache(home_cache)
    before = Path(cache.get_path(infer_source_file(str(wrapper))))
    assert before.is_relative_to(home_cache)  # what a pod never sees

    moved = share_runtime_source_cache(SimpleNamespace(sourcecache=cache), str(workdir))
    after = Path(cache.get_path(infer_source_file(str(wrapper))))
    assert moved == workdir / ".snakemake" / "converged" / "runtime-source-cache"
    assert after.is_relative_to(moved) and after.read_text() == "print('wrapped')\n"


def test_a_snakemake_without_that_cache_is_left_alone(tmp_path: Path) -> None:
    assert share_runtime_source_cache(SimpleNamespace(), str(tmp_path)) is None
