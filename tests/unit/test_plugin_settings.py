"""The plugin's settings: help on every field, one validation reporting every problem, one storage model."""

from __future__ import annotations

from dataclasses import fields

from snakemake_executor_plugin_converged import ExecutorSettings, common_settings


def test_every_setting_has_help_and_a_default() -> None:
    for f in fields(ExecutorSettings):
        assert len(f.metadata.get("help", "")) > 20, f.name
    assert ExecutorSettings().controller == "deployed" and ExecutorSettings().default_backend == "auto"


def test_validation_reports_every_problem_at_once() -> None:
    assert ExecutorSettings().problems() == []
    problems = ExecutorSettings(poll_interval=0, cancel_timeout=-1, kueue_weight=0).problems()
    assert problems == [
        "--converged-poll-interval must be > 0",
        "--converged-cancel-timeout must be > 0",
        "--converged-kueue-weight must be > 0",
    ]


def test_one_storage_model_for_both_backends_a_shared_filesystem() -> None:
    assert common_settings.non_local_exec and not common_settings.implies_no_shared_fs
    assert not common_settings.job_deploy_sources and not common_settings.auto_deploy_default_storage_provider
    assert not common_settings.pass_envvar_declarations_to_cmd  # they go into the WorkflowStep's env


def test_images_and_shared_paths_are_checked() -> None:
    problems = ExecutorSettings(image="-x", slurm_image=" ", shared_paths="/shared=home,data").problems()
    assert problems == [
        "--converged-image must be a container image reference",
        "--converged-slurm-image must be a container image reference",
        "--converged-shared-paths is for the embedded controller "
        "(a deployed controller mounts what its own --shared-paths names)",
        "--converged-shared-paths: data: the path must be absolute",
    ]
    shared = "/shared,/scratch=scratch"  # the namespace's claims converged-shared and scratch
    assert ExecutorSettings(controller="embedded", shared_paths=shared).problems() == []


def test_keep_finished_is_a_retention_of_at_most_a_year() -> None:
    assert ExecutorSettings(keep_finished=0).problems() == []
    assert ExecutorSettings(keep_finished=-1).problems() == [
        "--converged-keep-finished must be between 0 and 31536000 seconds (a year)"
    ]
