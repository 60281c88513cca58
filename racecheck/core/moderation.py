"""Turn a DetectModerationLabels response into an accept/reject decision."""

from __future__ import annotations

from typing import Any

from racecheck.core.settings import Settings


def top_level_category(label: dict[str, Any], parents: dict[str, str]) -> str:
    """Walk ``ParentName`` up to the root (taxonomy level 1) of Rekognition's hierarchy."""
    name = label["Name"]
    seen = {name}
    parent = label.get("ParentName") or ""
    while parent:
        name = parent
        parent = parents.get(parent, "")
        if parent in seen:  # a malformed response must not loop forever
            break
        seen.add(parent)
    return name


def assess_moderation(response: dict[str, Any], settings: Settings) -> dict[str, Any]:
    labels = [label for label in response.get("ModerationLabels", [])
              if label.get("Confidence", 0) >= settings.moderation_min_confidence]
    parents = {label["Name"]: label.get("ParentName") or "" for label in labels}
    blocking = {category.casefold() for category in settings.moderation_blocking_categories}
    reasons: list[str] = []
    kept = []
    for label in labels:
        category = top_level_category(label, parents)
        kept.append({"Name": label["Name"], "ParentName": label.get("ParentName") or "",
                     "Confidence": round(float(label["Confidence"]), 2), "Category": category})
        reason = f"MODERATION:{category}"
        if category.casefold() in blocking and reason not in reasons:
            reasons.append(reason)
    return {
        "accepted": not reasons,
        "reasons": reasons,
        "labels": kept,
        "model_version": response.get("ModerationModelVersion", ""),
    }
