"""set_condition keeps a condition list the way apimachinery's meta.SetStatusCondition does."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from converged_bridge.api.conditions import (
    Condition,
    ConditionStatus,
    find_condition,
    remove_condition,
    set_condition,
)

T0 = datetime(2026, 11, 22, 6, 0, tzinfo=UTC)
T1 = T0 + timedelta(minutes=5)


def cond(type_: str, status: ConditionStatus, reason: str = "Because", generation: int = 1) -> Condition:
    return Condition(
        type=type_,
        status=status,
        reason=reason,
        message=f"{type_} is {status.value}",
        observed_generation=generation,
        last_transition_time=T0 - timedelta(days=1),  # ignored by set_condition
    )


def test_new_condition_is_appended_with_now() -> None:
    existing = [cond("Reachable", ConditionStatus.TRUE)]
    result = set_condition(existing, cond("Synced", ConditionStatus.FALSE), T1)
    assert [c.type for c in result] == ["Reachable", "Synced"]
    assert result[1].last_transition_time == T1
    assert existing == [cond("Reachable", ConditionStatus.TRUE)]  # input untouched


def test_same_status_keeps_transition_time_but_takes_reason_message_generation() -> None:
    first = set_condition([], cond("Synced", ConditionStatus.TRUE, "Listed", 1), T0)
    second = set_condition(first, cond("Synced", ConditionStatus.TRUE, "Relisted", 2), T1)
    (synced,) = second
    assert synced.last_transition_time == T0
    assert (synced.reason, synced.observed_generation) == ("Relisted", 2)


def test_status_change_moves_transition_time_and_keeps_order() -> None:
    start = set_condition([], cond("Reachable", ConditionStatus.TRUE), T0)
    start = set_condition(start, cond("Synced", ConditionStatus.TRUE), T0)
    result = set_condition(start, cond("Reachable", ConditionStatus.FALSE, "Timeout"), T1)
    assert [c.type for c in result] == ["Reachable", "Synced"]
    reachable = find_condition(result, "Reachable")
    assert reachable is not None
    assert (reachable.status, reachable.reason, reachable.last_transition_time) == (
        ConditionStatus.FALSE,
        "Timeout",
        T1,
    )
    assert find_condition(result, "Synced") == start[1]


def test_naive_now_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        set_condition([], cond("Synced", ConditionStatus.TRUE), datetime(2026, 1, 1))


def test_remove_and_find() -> None:
    conditions = set_condition([], cond("Synced", ConditionStatus.TRUE), T0)
    assert find_condition(conditions, "Reachable") is None
    assert remove_condition(conditions, "Synced") == []
    assert remove_condition(conditions, "Reachable") == conditions
