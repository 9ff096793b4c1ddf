"""A step's pod when its rule names its own images (pure): the step's snakemake in the driver container
(the step image), one native sidecar per rule image serving its commands (converged_bridge.handover).

The sidecars are init containers with `restartPolicy: Always`: they start before the driver and the
kubelet stops them once the driver has ended, so the pod ends as the step does and its exit code is the
driver's (the only regular container). The step's requests sit on the first sidecar, where the rule's
work runs; the driver asks for nothing of its own, so Kueue counts the step's resources once.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from converged_bridge.api.workflowstep import WorkflowStep
from converged_bridge.errors import InvalidStep
from converged_bridge.handover.build import (
    POD_HANDOVER,
    POD_SEARCHPATHS,
    RULE_SEARCHPATHS,
    build_pod_handover,
    build_runner_command,
    registry_reference,
    rule_image_problem,
)

HANDOVER_VOLUME = "converged-handover"
SEARCHPATHS_VOLUME = "converged-searchpaths"


@dataclass(frozen=True)
class RuleImageParts:
    driver: dict[str, Any]
    sidecars: list[dict[str, Any]]
    volumes: list[dict[str, Any]]


def build_rule_image_parts(step: WorkflowStep, container: dict[str, Any], pull_policy: str) -> RuleImageParts:
    """`container` (the step's, as built for its image) made the driver, and the sidecars beside it."""
    images = step.spec.rule_images
    references = []
    for index, image in enumerate(images):
        reference = registry_reference(image.url)
        if reference is None:
            raise InvalidStep(f"spec.ruleImages[{index}].url", rule_image_problem(image.url) or image.url)
        references.append(reference)
    handover = build_pod_handover([image.path for image in images], container["command"])
    shared_mounts = list(container.get("volumeMounts", []))
    driver = dict(container)
    resources = driver.pop("resources")
    driver["command"] = handover.command
    driver["env"] = [*container.get("env", []), *({"name": k, "value": v} for k, v in handover.env.items())]
    driver["volumeMounts"] = [
        *shared_mounts,
        {"name": HANDOVER_VOLUME, "mountPath": POD_HANDOVER},
        {"name": SEARCHPATHS_VOLUME, "mountPath": POD_SEARCHPATHS},
    ]
    sidecars = []
    for index, reference in enumerate(references):
        sidecar: dict[str, Any] = {
            "name": f"rule-{index}",
            "image": reference,
            "imagePullPolicy": pull_policy,
            "restartPolicy": "Always",
            "command": build_runner_command(index),
            "volumeMounts": [
                *copy.deepcopy(shared_mounts),
                {"name": HANDOVER_VOLUME, "mountPath": POD_HANDOVER},
                {"name": SEARCHPATHS_VOLUME, "mountPath": RULE_SEARCHPATHS, "readOnly": True},
            ],
        }
        if index == 0:
            sidecar["resources"] = resources
        if container.get("workingDir"):
            sidecar["workingDir"] = container["workingDir"]
        sidecars.append(sidecar)
    volumes = [{"name": HANDOVER_VOLUME, "emptyDir": {}}, {"name": SEARCHPATHS_VOLUME, "emptyDir": {}}]
    return RuleImageParts(driver, sidecars, volumes)
