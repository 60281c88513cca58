"""A reviewer's decisions on flagged photos, and how the runners' evidence follows them.

A decision never touches the machine's verdict: it is an entry appended to the photo's
record (``decisions``, oldest first: action, who, when, note) and the record's current
state (``decision``: ``confirmed``, ``dismissed``, or absent when undecided or undone).
Appending is one UpdateItem (``list_append``), which DynamoDB applies atomically, so two
reviewers deciding at once both land in the history; the current state is the last
entry's, in the order DynamoDB applied them (never the reviewers' clocks).

Evidence follows the state, per registered bib the photo counted as inconsistent:

- dismissed: the photo no longer counts as inconsistent (``inconsistent`` -1, its
  ``reason_<code>`` counters -1, moved from ``inconsistent_photos`` to
  ``dismissed_photos``). It is not counted as consistent either: a dismissal withdraws
  evidence, it does not add any.
- confirmed: the photo stays inconsistent and joins ``confirmed_photos``; a runner with a
  confirmed photo is ``confirmed``.
- undone (or changed): the opposite moves, so every change is reversible.

Each change is one conditional UpdateItem per runner, conditional on the runner still
being in the old state for this photo: a retried or repeated stream record changes
nothing twice, and a replayed sequence of changes ends where it ended the first time.
``TransitionPlan`` describes that change once; ``decision_evidence_update`` turns it into
the UpdateItem and ``apply_to_evidence`` applies it to a plain item (local runs), so both
paths share one rule.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from racecheck.core.records import to_attribute_values
from racecheck.core.settings import Settings

CONFIRM, DISMISS, UNDO = "confirm", "dismiss", "undo"
ACTIONS = (CONFIRM, DISMISS, UNDO)
CONFIRMED, DISMISSED = "confirmed", "dismissed"
STATE_AFTER = {CONFIRM: CONFIRMED, DISMISS: DISMISSED, UNDO: None}
# Photos a person can decide on: the ones the machine flagged. ERROR and REJECTED photos
# have nothing to confirm (they are checked again with `racecheck redrive --errors`).
DECIDABLE_VERDICTS = ("FAIL", "REVIEW")
NOTE_LIMIT = 2000
# A record must stay under DynamoDB's 400 KB item limit whatever reviewers do.
MAX_DECISIONS = 100

# Runner statuses shown to reviewers.
STATUS_CONFIRMED = "confirmed"  # a person confirmed at least one of the runner's photos
STATUS_SUSPECT = "suspect"  # alerted, and still over the threshold
STATUS_CLEARED = "cleared"  # alerted, then dismissals took the runner below the threshold


class DecisionRefused(ValueError):
    """The decision cannot apply to this photo."""


class NotFlagged(DecisionRefused):
    """The machine never flagged the photo: there is nothing to confirm or dismiss."""


class AlreadyDecided(DecisionRefused):
    """The photo is already in the state the decision asks for: nothing to record."""


def current_state(decisions: Sequence[Mapping[str, Any]] | None) -> str | None:
    """The state the history ends in: the last entry's action decides."""
    if not decisions:
        return None
    return STATE_AFTER.get(str(decisions[-1].get("action")))


def decision_entry(action: str, *, by: str, at: str, note: str = "") -> dict[str, Any]:
    if action not in ACTIONS:
        raise ValueError(f"unknown action {action!r}: expected one of {', '.join(ACTIONS)}")
    entry: dict[str, Any] = {"action": action, "by": by, "at": at}
    if note.strip():
        entry["note"] = note.strip()[:NOTE_LIMIT]
    return entry


def _describe(state: str | None) -> str:
    return state or "undecided"


def check_decision(record: Mapping[str, Any], action: str) -> None:
    """Refuse a decision that cannot apply to this record, with a reviewer's explanation."""
    verdict = str(record.get("verdict") or "")
    if verdict not in DECIDABLE_VERDICTS:
        raise NotFlagged(
            f"{record.get('key')} was never flagged (verdict {verdict or 'unknown'}): only "
            f"{' and '.join(DECIDABLE_VERDICTS)} photos take a decision")
    decisions = list(record.get("decisions") or [])
    state = current_state(decisions)
    if state == STATE_AFTER[action]:
        last = decisions[-1] if decisions else {}
        by = f" by {last.get('by')} at {last.get('at')}" if last else ""
        raise AlreadyDecided(
            f"{record.get('key')} is already {_describe(state)}{by}: nothing recorded")
    if len(decisions) >= MAX_DECISIONS:
        raise DecisionRefused(f"{record.get('key')} already holds {MAX_DECISIONS} decisions")


def decision_item_update(key: Mapping[str, str], entry: Mapping[str, Any], *, seen: int
                         ) -> dict[str, Any]:
    """UpdateItem arguments appending ``entry`` to the photo's record (results table).

    Conditional on the record being the photo's own flagged record (UpdateItem would
    otherwise create an item for an unknown key, or decide an index item) holding exactly
    the ``seen`` decisions the reviewer read: a concurrent reviewer's entry makes the write
    fail rather than go unnoticed, and the caller reads again and appends after it
    (optimistic locking, so no decision is lost whatever the interleaving).
    """
    state = STATE_AFTER[str(entry["action"])]
    names = {"#decisions": "decisions", "#decision": "decision", "#verdict": "verdict"}
    values: dict[str, Any] = {":entry": [dict(entry)], ":none": []}
    for index, verdict in enumerate(DECIDABLE_VERDICTS):
        values[f":flagged{index}"] = verdict
    expression = "SET #decisions = list_append(if_not_exists(#decisions, :none), :entry)"
    if state is None:
        expression += " REMOVE #decision"
    else:
        expression += ", #decision = :state"
        values[":state"] = state
    flagged = ", ".join(f":flagged{index}" for index in range(len(DECIDABLE_VERDICTS)))
    if seen:
        values[":seen"] = seen
        unchanged = "size(#decisions) = :seen"
    else:
        unchanged = "(attribute_not_exists(#decisions) OR size(#decisions) = :zero)"
        values[":zero"] = 0
    return {
        "Key": to_attribute_values({"photo": key["photo"], "version": key["version"]}),
        "UpdateExpression": expression,
        "ConditionExpression": f"#verdict IN ({flagged}) AND {unchanged}",
        "ExpressionAttributeNames": names,
        "ExpressionAttributeValues": to_attribute_values(values),
    }


# ------------------------------------------------------------------------ evidence


@dataclass(frozen=True)
class TransitionPlan:
    """What one photo's change of state does to one runner's evidence item."""

    bib: str
    photo: str
    old: str | None
    new: str | None
    counters: dict[str, int] = field(default_factory=dict)  # attribute -> delta
    set_adds: tuple[str, ...] = ()  # sets the photo joins
    set_removes: tuple[str, ...] = ()  # sets the photo leaves

    def holds_old_state(self, item: Mapping[str, Any]) -> bool:
        """Whether the item shows the photo in the old state (the update's condition)."""
        def has(name: str) -> bool:
            return self.photo in (item.get(name) or ())

        if self.old == DISMISSED:
            return has("dismissed_photos")
        if self.old == CONFIRMED:
            return has("confirmed_photos")
        return has("inconsistent_photos") and not has("confirmed_photos")


def transition_plans(record: Mapping[str, Any], old: str | None, new: str | None
                     ) -> list[TransitionPlan]:
    """One plan per registered runner whose evidence counted this photo as inconsistent."""
    if old == new:
        return []
    photo = str(record["photo"])
    plans = []
    for entry in record.get("evidence") or []:
        if not entry.get("registered") or entry.get("outcome") != "inconsistent":
            continue  # nothing was counted against anyone for this number
        reasons = sorted(set(entry.get("reasons") or []))
        counters: dict[str, int] = {}
        adds: list[str] = []
        removes: list[str] = []
        restore = old == DISMISSED  # leaving a dismissal counts the photo again
        withdraw = new == DISMISSED
        if restore or withdraw:
            delta = 1 if restore else -1
            counters["inconsistent"] = delta
            counters.update({f"reason_{code}": delta for code in reasons})
            (adds if restore else removes).append("inconsistent_photos")
            (removes if restore else adds).append("dismissed_photos")
        if old == CONFIRMED:
            removes.append("confirmed_photos")
        if new == CONFIRMED:
            adds.append("confirmed_photos")
        plans.append(TransitionPlan(bib=str(entry["bib"]), photo=photo, old=old, new=new,
                                    counters=counters, set_adds=tuple(adds),
                                    set_removes=tuple(removes)))
    return plans


def decision_evidence_update(plan: TransitionPlan) -> dict[str, Any]:
    """UpdateItem arguments (evidence table) applying the plan once."""
    names: dict[str, str] = {}
    values: dict[str, Any] = {":photo": plan.photo, ":photos": {plan.photo}}

    def name(attribute: str) -> str:
        placeholder = f"#a{len(names)}"
        names[placeholder] = attribute
        return placeholder

    adds: list[str] = []
    for attribute, delta in sorted(plan.counters.items()):
        values[f":d{len(adds)}"] = delta
        adds.append(f"{name(attribute)} :d{len(adds)}")
    adds += [f"{name(attribute)} :photos" for attribute in plan.set_adds]
    deletes = [f"{name(attribute)} :photos" for attribute in plan.set_removes]
    expression = " ".join(part for part in (
        "ADD " + ", ".join(adds) if adds else "",
        "DELETE " + ", ".join(deletes) if deletes else "") if part)

    def contains(attribute: str) -> str:
        return f"contains({name(attribute)}, :photo)"

    if plan.old == DISMISSED:
        condition = contains("dismissed_photos")
    elif plan.old == CONFIRMED:
        condition = contains("confirmed_photos")
    else:
        confirmed = name("confirmed_photos")
        condition = (f"{contains('inconsistent_photos')} AND (attribute_not_exists({confirmed})"
                     f" OR NOT contains({confirmed}, :photo))")
    return {
        "Key": {"bib": {"S": plan.bib}},
        "UpdateExpression": expression,
        "ConditionExpression": condition,
        "ExpressionAttributeNames": names,
        "ExpressionAttributeValues": to_attribute_values(values),
    }


def apply_to_evidence(item: dict[str, Any], plan: TransitionPlan) -> bool:
    """The plan applied to a plain evidence item, as DynamoDB applies the update.

    Returns False (and changes nothing) when the condition does not hold. Sets are kept as
    sorted lists, the form ``from_attribute_values`` gives them; an emptied set goes away,
    as DynamoDB removes it.
    """
    if not plan.holds_old_state(item):
        return False
    for attribute, delta in plan.counters.items():
        item[attribute] = int(item.get(attribute) or 0) + delta
    for attribute in plan.set_adds:
        item[attribute] = sorted({*(item.get(attribute) or ()), plan.photo})
    for attribute in plan.set_removes:
        remaining = sorted(set(item.get(attribute) or ()) - {plan.photo})
        if remaining:
            item[attribute] = remaining
        else:
            item.pop(attribute, None)
    return True


# ------------------------------------------------------------------------ runners


def is_suspect(evidence: Mapping[str, Any], settings: Settings) -> bool:
    """Enough inconsistent photos, and more of them than ``suspect_ratio`` x consistent."""
    inconsistent = int(evidence.get("inconsistent") or 0)
    consistent = int(evidence.get("consistent") or 0)
    return (inconsistent >= settings.suspect_min_inconsistent
            and inconsistent > settings.suspect_ratio * consistent)


def runner_status(evidence: Mapping[str, Any], settings: Settings) -> str | None:
    """confirmed, suspect, cleared, or None for a runner nobody was alerted about."""
    if evidence.get("confirmed_photos"):
        return STATUS_CONFIRMED
    if not evidence.get("alerted"):
        return None
    return STATUS_SUSPECT if is_suspect(evidence, settings) else STATUS_CLEARED
