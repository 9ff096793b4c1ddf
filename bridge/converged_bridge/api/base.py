"""Base classes of the API models: camelCase on the wire, snake_case in Python, immutable."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic.alias_generators import to_camel


class SpecModel(BaseModel):
    """A part of a spec: unknown fields are errors, so a typo never silently drops intent."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
    )


class StatusModel(BaseModel):
    """A part of a status: unknown fields are ignored, so an older reader survives a newer writer."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="ignore",
        frozen=True,
    )


def dump_manifest(model: BaseModel) -> dict[str, Any]:
    """The JSON-ready dict of `model` as the Kubernetes API spells it (aliases, unset fields left out)."""
    return model.model_dump(mode="json", by_alias=True, exclude_none=True)


def describe_validation_error(error: ValidationError) -> str:
    """Every problem of a rejected object, `field.path: message; ...` — as the controller writes it into
    an invalid step's or allocation's status and the plugin shows it for a step it cannot build."""
    return "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in error.errors())
