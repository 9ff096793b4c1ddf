"""Deterministic, valid names and labels for the WorkflowSteps of a run. Pure."""

from __future__ import annotations

import hashlib
import re

NAME_MAX = 63  # a DNS label: the Kueue backend names Jobs after the step, and Job names become labels
LABEL_VALUE_MAX = 63
_NOT_NAME = re.compile(r"[^a-z0-9-]+")
_NOT_LABEL = re.compile(r"[^A-Za-z0-9_.-]+")
_RUN_ID = re.compile(r"^[a-z0-9]([-a-z0-9]{0,30}[a-z0-9])?$")


def build_run_id(token: str) -> str:
    """The run id from a token (random per run unless the user sets one): `sm-<token>`, a DNS label."""
    slug = _NOT_NAME.sub("-", token.lower()).strip("-")[:30].strip("-")
    run_id = slug if slug.startswith("sm-") else f"sm-{slug}"
    if not _RUN_ID.fullmatch(run_id):
        raise ValueError(f"run id {token!r} gives no valid name")
    return run_id


def _digest(text: str, length: int = 6) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def build_step_name(
    run_id: str, rule: str, jobid: int, attempt: int = 1, declared_retry: bool = False
) -> str:
    """`<run>-<rule>-<jobid>[-a<attempt>][-d]`, a DNS label of at most 63 characters; `-d`: the step run
    again at its declared limits after it was killed at a learnt (right-sized) one.

    The rule is lower-cased with other characters turned into '-'; when that changes or shortens it,
    a digest of the real rule name keeps names of different rules apart.
    """
    suffix = f"-{jobid}" + (f"-a{attempt}" if attempt > 1 else "") + ("-d" if declared_retry else "")
    slug = _NOT_NAME.sub("-", rule.lower()).strip("-") or "step"
    room = NAME_MAX - len(run_id) - 1 - len(suffix)
    if slug != rule or len(slug) > room:
        digest = _digest(rule)
        slug = slug[: max(0, room - len(digest) - 1)].strip("-")
        slug = f"{slug}-{digest}" if slug else digest
    return f"{run_id}-{slug}{suffix}"


def build_rule_label(rule: str) -> str:
    """The rule as a label value (at most 63 of [A-Za-z0-9_.-], alphanumeric at both ends)."""
    value = _NOT_LABEL.sub("_", rule).strip("_.-")
    if value != rule or len(value) > LABEL_VALUE_MAX:
        digest = _digest(rule)
        value = value[: LABEL_VALUE_MAX - len(digest) - 1].strip("_.-")
        value = f"{value}-{digest}" if value else digest
    return value
