"""HTML review page for a local run: one card per photo that needs a race official's attention.

The page is self-contained (inline CSS and JS, no network) and sits next to a `photos/` folder
of downscaled JPEG copies, so the whole output folder can be moved or zipped.
"""

from __future__ import annotations

import hashlib
import html
import os
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import IO, Any

from PIL import Image, ImageOps

from racecheck.core.decisions import current_state
from racecheck.core.rules import (
    AGE_OUTSIDE_CATEGORY,
    AGE_UNKNOWN,
    AMBIGUOUS_LINK,
    GENDER_MISMATCH,
    GENDER_UNCERTAIN,
    MISMATCH_CODES,
    NO_BIB,
    NO_FACE_FOR_BIB,
)

VERDICT_ORDER = ("FAIL", "REVIEW", "ERROR", "REJECTED", "PASS")
ATTENTION_VERDICTS = frozenset({"FAIL", "REVIEW", "ERROR", "REJECTED"})
THUMBNAIL_LONG_SIDE = 1280
# Thumbnails are made this many at a time: Pillow decodes, scales and encodes outside the
# GIL, and an exported page waits on S3 for each photo. A local run writes its page once
# the photos are checked, with every core free.
THUMBNAIL_THREADS = min(8, os.cpu_count() or 1)
PHOTOS_DIR_NAME = "photos"
PAGE_NAME = "review.html"

VERDICT_HELP = {
    "FAIL": "strong evidence the bib is worn by someone else",
    "REVIEW": "something does not fit: a person should look",
    "ERROR": "the photo could not be checked",
    "REJECTED": "not a usable photo (not an image, unreadable or blocked)",
    "PASS": "bibs and faces agree with the registrations",
}

# A bib and the face linked to it share one of these colours; bright enough to stand out on
# photos, distinct from the verdict colours used by the badges.
LINK_COLOURS = ("#00b8d9", "#ff7a00", "#e040fb", "#76ff03", "#ffd600", "#2979ff", "#ff4081")
# Reason badges: red for evidence against the registration, grey for information only.
INFORMATION_CODES = frozenset(
    {NO_BIB, NO_FACE_FOR_BIB, AMBIGUOUS_LINK, GENDER_UNCERTAIN, AGE_UNKNOWN}
)
UNLINKED_FACE_COLOUR = "#cfd8dc"
UNLINKED_BIB_COLOUR = "#ffffff"
NEAR_MISS_COLOUR = "#eceff1"


# What a thumbnail is made from: a path or an open binary file; None when there is none.
PhotoSource = Callable[[Mapping[str, Any]], "Path | IO[bytes] | None"]


def write_review_page(records: list[dict[str, Any]], *, photos_root: Path | None = None,
                      out_dir: Path, suspects: Sequence[Mapping[str, Any]] = (),
                      page_name: str = PAGE_NAME,
                      photo_source: PhotoSource | None = None) -> Path:
    """Write `out_dir/<page_name>` (+ thumbnails in `out_dir/photos/`) and return its path.

    Each photo comes from ``photos_root / key``, or from ``photo_source(record)`` when
    given (an exported page takes them from S3 or from a run's thumbnails).
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    photos_dir = out_dir / PHOTOS_DIR_NAME
    photos_dir.mkdir(exist_ok=True)
    ordered = sorted(records, key=_card_sort_key)

    def thumbnail_of(record: Mapping[str, Any]) -> str | None:
        key = str(record.get("key", ""))
        if photo_source is not None:
            source = photo_source(record)
        else:
            source = photos_root / key if photos_root is not None and key else None
        return _write_thumbnail(source, key, photos_dir)

    # One thumbnail per key (a key's records share its file): never two writers of one file.
    first_of_key = {str(record.get("key", "")): record for record in reversed(ordered)}
    with ThreadPoolExecutor(max_workers=THUMBNAIL_THREADS) as pool:
        thumbnails = dict(zip(first_of_key, pool.map(thumbnail_of, first_of_key.values()),
                              strict=True))
    cards = []
    for record in ordered:
        thumbnail = thumbnails[str(record.get("key", ""))]
        image_src = f"{PHOTOS_DIR_NAME}/{thumbnail}" if thumbnail else None
        cards.append(render_card(record, image_src=image_src))
    page = render_page(records, cards, suspects=suspects)
    page_path = out_dir / page_name
    page_path.write_text(page, encoding="utf-8")
    return page_path


def thumbnail_name(key: str) -> str:
    """The thumbnail's file name: from the key alone, so a server can find it again."""
    return hashlib.sha1(key.encode("utf-8", "surrogatepass")).hexdigest()[:20] + ".jpg"


def verdict_of(record: Mapping[str, Any]) -> str:
    verdict = str(record.get("verdict") or "ERROR").upper()
    return verdict if verdict in VERDICT_ORDER else "ERROR"


def needs_attention(record: Mapping[str, Any]) -> bool:
    return verdict_of(record) in ATTENTION_VERDICTS


def _card_sort_key(record: Mapping[str, Any]) -> tuple[int, str]:
    return VERDICT_ORDER.index(verdict_of(record)), str(record.get("key", ""))


def _write_thumbnail(source: Path | IO[bytes] | None, key: str, photos_dir: Path
                     ) -> str | None:
    """Copy a downscaled JPEG of the photo; None when there is nothing Pillow can show."""
    if source is None or (isinstance(source, Path) and not source.is_file()):
        return None
    name = thumbnail_name(key)
    try:
        with Image.open(source) as opened:
            opened.draft("RGB", (THUMBNAIL_LONG_SIDE, THUMBNAIL_LONG_SIDE))
            # Rekognition reports boxes on the EXIF-corrected image, so show that orientation
            # and drop the tag so browsers do not rotate it a second time.
            upright = ImageOps.exif_transpose(opened)
            rgb = upright.convert("RGB")
        rgb.thumbnail((THUMBNAIL_LONG_SIDE, THUMBNAIL_LONG_SIDE))
        rgb.save(photos_dir / name, "JPEG", quality=85)
    except Exception:  # any file at all may arrive: a card without a picture beats no page
        return None
    return name


# ----------------------------------------------------------------------------- rendering


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _as_list(value: object) -> list[Any]:
    return list(value) if isinstance(value, list | tuple) else []


def _as_dict(value: object) -> dict[str, Any]:
    return dict(value) if isinstance(value, Mapping) else {}


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def box_style(box: object) -> str | None:
    """CSS placing a Rekognition box (fractions of the image) over the image, or None."""
    fields = _as_dict(box)
    values = [_number(fields.get(name)) for name in ("Left", "Top", "Width", "Height")]
    if any(value is None for value in values):
        return None
    left, top, width, height = (min(max(v or 0.0, 0.0), 1.0) for v in values)
    width = min(width, 1.0 - left)
    height = min(height, 1.0 - top)
    return (
        f"left:{left * 100:.3f}%;top:{top * 100:.3f}%;"
        f"width:{width * 100:.3f}%;height:{height * 100:.3f}%"
    )


def _box_centre(box: object) -> tuple[float, float] | None:
    fields = _as_dict(box)
    values = [_number(fields.get(name)) for name in ("Left", "Top", "Width", "Height")]
    if any(value is None for value in values):
        return None
    left, top, width, height = (v or 0.0 for v in values)
    return (left + width / 2) * 100, (top + height / 2) * 100


def _humanize(code: str) -> str:
    return code.replace("_", " ").strip().capitalize()


def _percent(value: object) -> str:
    number = _number(value)
    return f"{number:.0f}%" if number is not None else ""


def _gender_word(value: object) -> str:
    text = str(value or "").strip()
    return {"M": "Male", "F": "Female", "X": "X (non-binary)"}.get(text.upper(), text)


def _registered_age(registered: Mapping[str, Any]) -> str:
    age_min, age_max = _number(registered.get("age_min")), _number(registered.get("age_max"))
    if age_min is None and age_max is None:
        return ""
    if age_max is None:
        return f"{age_min:.0f}+"
    if age_min is None:
        return f"up to {age_max:.0f}"
    return f"{age_min:.0f}\u2013{age_max:.0f}"


def _estimated_age(estimated: Mapping[str, Any]) -> str:
    low, high = _number(estimated.get("age_low")), _number(estimated.get("age_high"))
    if low is None and high is None:
        return ""
    if low is None or high is None:
        return f"{(low if low is not None else high):.0f}"
    return f"{low:.0f}\u2013{high:.0f}"


def _reason_kind(code: str) -> str:
    if code in MISMATCH_CODES:
        return "bad"
    if code in INFORMATION_CODES:
        return "info"
    return "warn"


def _reason_badges(reasons: Iterable[object]) -> str:
    return "".join(
        f'<span class="reason {_reason_kind(str(code))}" title="{_e(_humanize(str(code)))}">'
        f"{_e(code)}</span>"
        for code in reasons
    )


def _overlay(record: Mapping[str, Any]) -> tuple[str, str]:
    """(box divs, svg with the bib-to-face link lines) for one photo."""
    faces = _as_list(record.get("faces"))
    links = [_as_dict(link) for link in _as_list(record.get("links"))]
    boxes: list[str] = []
    lines: list[str] = []
    linked_faces: dict[int, str] = {}
    linked_bibs: set[str] = set()

    for position, link in enumerate(links):
        colour = LINK_COLOURS[position % len(LINK_COLOURS)]
        bib_number = str(link.get("bib", ""))
        linked_bibs.add(bib_number)
        outcome = str(link.get("outcome") or "")
        style = box_style(link.get("bib_box"))
        if style:
            boxes.append(
                f'<div class="box bib {_e(outcome)}" style="{style};--c:{colour}" '
                f'data-bib="{_e(bib_number)}" title="bib {_e(bib_number)}">'
                f'<span class="tag">#{_e(bib_number)}</span></div>'
            )
        face_index = link.get("face_index")
        if isinstance(face_index, int) and 0 <= face_index < len(faces):
            linked_faces.setdefault(face_index, colour)
            start = _box_centre(link.get("bib_box"))
            end = _box_centre(_as_dict(faces[face_index]).get("box"))
            if start and end:
                lines.append(
                    f'<line x1="{start[0]:.3f}" y1="{start[1]:.3f}" x2="{end[0]:.3f}" '
                    f'y2="{end[1]:.3f}" stroke="{colour}" />'
                )

    for bib in _as_list(record.get("bibs")):
        bib = _as_dict(bib)
        number = str(bib.get("number", ""))
        style = box_style(bib.get("box"))
        if number in linked_bibs or not style:
            continue
        boxes.append(
            f'<div class="box bib" style="{style};--c:{UNLINKED_BIB_COLOUR}" '
            f'data-bib="{_e(number)}" title="bib {_e(number)}">'
            f'<span class="tag">#{_e(number)}</span></div>'
        )

    for miss in _as_list(record.get("near_misses")):
        miss = _as_dict(miss)
        style = box_style(miss.get("box"))
        if not style:
            continue
        label = f"{miss.get('number', '')} ({miss.get('why', 'not a bib')})"
        boxes.append(
            f'<div class="box near-miss" style="{style};--c:{NEAR_MISS_COLOUR}" '
            f'title="rejected text: {_e(label)}"></div>'
        )

    for index, face in enumerate(faces):
        face = _as_dict(face)
        style = box_style(face.get("box"))
        if not style:
            continue
        colour = linked_faces.get(index, UNLINKED_FACE_COLOUR)
        description = ", ".join(
            part
            for part in (
                f"face {index + 1}",
                _gender_word(face.get("gender")),
                _estimated_age(face) and f"age {_estimated_age(face)}",
                "sunglasses" if face.get("sunglasses") else "",
            )
            if part
        )
        boxes.append(
            f'<div class="box face{"" if index in linked_faces else " unlinked"}" '
            f'style="{style};--c:{colour}" data-face="{index}" title="{_e(description)}">'
            f'<span class="tag">face {index + 1}</span></div>'
        )

    svg = (
        '<svg class="links" viewBox="0 0 100 100" preserveAspectRatio="none" '
        f'aria-hidden="true">{"".join(lines)}</svg>'
        if lines
        else ""
    )
    return "".join(boxes), svg


def _comparison_table(link: Mapping[str, Any], colour: str) -> str:
    registered = _as_dict(link.get("registered"))
    estimated = _as_dict(link.get("estimated"))
    findings = [str(code) for code in _as_list(link.get("findings"))]
    gender_flag = GENDER_MISMATCH in findings
    age_flag = AGE_OUTSIDE_CATEGORY in findings
    outcome = str(link.get("outcome") or "")
    bib_number = str(link.get("bib", ""))

    if link.get("registered") is None:
        registered_gender = registered_age = '<span class="muted">not registered</span>'
    else:
        registered_gender = _e(_gender_word(registered.get("gender"))) or "—"
        category = registered.get("category")
        age_text = _registered_age(registered)
        # Show the category label only when it says more than the bounds ("M50-54", "Elite").
        label_adds = category and str(category).replace("-", "\u2013") != age_text
        registered_age = _e(age_text or "—") + (
            f' <span class="muted">({_e(category)})</span>' if label_adds else ""
        )
    if link.get("estimated") is None:
        estimated_gender = estimated_age = '<span class="muted">no face linked</span>'
    else:
        confidence = _percent(estimated.get("gender_confidence"))
        estimated_gender = _e(_gender_word(estimated.get("gender"))) or "—"
        if confidence:
            estimated_gender += f' <span class="muted">{_e(confidence)}</span>'
        estimated_age = _e(_estimated_age(estimated) or "—")
        if str(registered.get("gender") or "").upper() == "X":
            # The rules skip this comparison: say so rather than set two values side by side.
            estimated_gender += ' <span class="muted">(not compared)</span>'

    name = registered.get("name")
    name_html = f'<span class="runner-name">{_e(name)}</span>' if name else ""
    return (
        f'<div class="link {_e(outcome)}">'
        f'<div class="link-head"><span class="swatch" style="--c:{colour}"></span>'
        f'<span class="bib-number">#{_e(bib_number)}</span>{name_html}'
        f'<span class="outcome">{_e(_humanize(outcome)) if outcome else ""}</span></div>'
        '<table class="compare"><thead><tr><th></th><th>Registered</th><th>Estimated</th>'
        "</tr></thead><tbody>"
        f'<tr class="{"mismatch" if gender_flag else ""}"><th>Gender</th>'
        f"<td>{registered_gender}</td><td>{estimated_gender}</td></tr>"
        f'<tr class="{"mismatch" if age_flag else ""}"><th>Age</th>'
        f"<td>{registered_age}</td><td>{estimated_age}</td></tr>"
        "</tbody></table>"
        + (f'<div class="findings">{_reason_badges(findings)}</div>' if findings else "")
        + "</div>"
    )


def _details(record: Mapping[str, Any]) -> str:
    rows: list[str] = []
    image = _as_dict(record.get("image"))
    if image:
        size = _number(image.get("size_bytes"))
        parts = [
            str(image.get("format") or ""),
            (
                f"{image.get('width')}\u00d7{image.get('height')}"
                if image.get("width") and image.get("height")
                else ""
            ),
            f"{size / 1024:.0f} KB" if size is not None else "",
        ]
        rows.append(f"<dt>Image</dt><dd>{_e(' · '.join(p for p in parts if p))}</dd>")
    faces = _as_list(record.get("faces"))
    if faces:
        descriptions = []
        for index, face in enumerate(faces):
            face = _as_dict(face)
            text = ", ".join(
                part
                for part in (
                    _gender_word(face.get("gender")),
                    _percent(face.get("gender_confidence")),
                    _estimated_age(face) and f"age {_estimated_age(face)}",
                    "sunglasses" if face.get("sunglasses") else "",
                    "occluded" if face.get("occluded") else "",
                )
                if part
            )
            descriptions.append(f"<li>face {index + 1}: {_e(text or 'no attributes')}</li>")
        rows.append(f"<dt>Faces</dt><dd><ul>{''.join(descriptions)}</ul></dd>")
    misses = _as_list(record.get("near_misses"))
    if misses:
        items = "".join(
            f"<li>{_e(_as_dict(m).get('number', ''))} "
            f'<span class="muted">{_e(_as_dict(m).get("why", ""))}</span></li>'
            for m in misses
        )
        rows.append(f"<dt>Rejected text</dt><dd><ul>{items}</ul></dd>")
    hints = [_as_dict(hint) for hint in _as_list(record.get("hints"))]
    if hints:
        items = "".join(
            f"<li>{_e(hint.get('read', ''))} may be "
            f"{_e(', '.join(str(number) for number in _as_list(hint.get('registered'))))} "
            f'<span class="muted">{_e(hint.get("why", ""))}</span></li>'
            for hint in hints
        )
        rows.append(f"<dt>Registered numbers nearby</dt><dd><ul>{items}</ul></dd>")
    labels = _as_list(record.get("moderation_labels"))
    if labels:
        items = "".join(
            f"<li>{_e(_as_dict(label).get('Name', ''))} "
            f'<span class="muted">{_e(_percent(_as_dict(label).get("Confidence")))}</span></li>'
            for label in labels
        )
        rows.append(f"<dt>Moderation</dt><dd><ul>{items}</ul></dd>")
    if record.get("recorded_at"):
        rows.append(f"<dt>Checked</dt><dd>{_e(record.get('recorded_at'))}</dd>")
    if not rows:
        return ""
    return f'<details class="more"><summary>Details</summary><dl>{"".join(rows)}</dl></details>'


ACTION_WORDS = {"confirm": "Confirmed", "dismiss": "Dismissed", "undo": "Undid the decision"}
STATE_WORDS = {"confirmed": "Confirmed by a reviewer", "dismissed": "Dismissed by a reviewer"}


def decision_state(record: Mapping[str, Any]) -> str | None:
    return current_state(_as_list(record.get("decisions")))


def render_decisions(record: Mapping[str, Any]) -> str:
    """The photo's decisions, oldest first: who, when, and their note."""
    decisions = [_as_dict(entry) for entry in _as_list(record.get("decisions"))]
    if not decisions:
        return ""
    items = "".join(
        f'<li><b>{_e(ACTION_WORDS.get(str(entry.get("action")), entry.get("action")))}</b> '
        f'by <span class="who">{_e(entry.get("by", "?"))}</span> '
        f'<time>{_e(entry.get("at", ""))}</time>'
        + (f'<q class="note">{_e(entry["note"])}</q>' if entry.get("note") else "")
        + "</li>"
        for entry in decisions)
    return f'<ol class="history" aria-label="Decisions, oldest first">{items}</ol>'


def render_card(record: Mapping[str, Any], *, image_src: str | None, controls: str = "",
                ref: str | None = None, visible: bool | None = None) -> str:
    """One photo's card; ``controls`` (the review server's buttons) go under its evidence.

    PASS cards start hidden (the static page's filters show them) unless ``visible``.
    """
    verdict = verdict_of(record)
    key = str(record.get("key", ""))
    reasons = _as_list(record.get("reasons"))
    links = [_as_dict(link) for link in _as_list(record.get("links"))]
    bib_numbers = [str(_as_dict(b).get("number", "")) for b in _as_list(record.get("bibs"))]
    search_text = " ".join([key, *bib_numbers, *(str(link.get("bib", "")) for link in links)])

    if image_src:
        boxes, svg = _overlay(record)
        figure = (
            f'<div class="photo"><a class="frame" href="{_e(image_src)}" target="_blank" '
            f'rel="noopener"><img src="{_e(image_src)}" alt="{_e(key)}">{svg}{boxes}</a></div>'
        )
    else:
        figure = '<div class="photo missing">No preview: not an image that can be shown</div>'

    comparisons = "".join(
        _comparison_table(link, LINK_COLOURS[position % len(LINK_COLOURS)])
        for position, link in enumerate(links)
    )
    unlinked = [n for n in bib_numbers if n not in {str(link.get("bib", "")) for link in links}]
    if unlinked:
        comparisons += (
            '<p class="muted">Bibs read but not compared: '
            + ", ".join(f"#{_e(n)}" for n in unlinked)
            + "</p>"
        )
    if not links and not bib_numbers and verdict not in {"ERROR", "REJECTED"}:
        comparisons += '<p class="muted">No bib number was read in this photo.</p>'

    error = record.get("error")
    error_html = f'<p class="error">{_e(error)}</p>' if error else ""
    summary = record.get("summary")
    summary_html = f'<p class="summary">{_e(summary)}</p>' if summary else ""
    shown = verdict in ATTENTION_VERDICTS if visible is None else visible
    hidden = "" if shown else " hidden"
    state = decision_state(record)
    badge = (f'<span class="decided d-{state}" title="{_e(STATE_WORDS[state])}">'
             f"{_e(state.capitalize())}</span>" if state else "")
    decisions = render_decisions(record)
    return (
        f'<article class="card v-{verdict.lower()}" data-verdict="{verdict}" '
        f'data-search="{_e(search_text.lower())}" data-decision="{_e(state or "")}" '
        f'data-ref="{_e(ref if ref is not None else key)}"{hidden}>'
        f'<header><span class="verdict" title="{_e(VERDICT_HELP[verdict])}">{verdict}</span>'
        f'<h2 class="key" title="{_e(key)}">{_e(key) or "<em>no key</em>"}</h2>{badge}</header>'
        f"{summary_html}"
        + (f'<div class="reasons">{_reason_badges(reasons)}</div>' if reasons else "")
        + f"{error_html}{figure}"
        + (f'<div class="links-list">{comparisons}</div>' if comparisons else "")
        + (f'<section class="decision">{decisions}{controls}</section>'
           if decisions or controls else "")
        + _details(record)
        + "</article>"
    )


def render_suspects(suspects: Sequence[Mapping[str, Any]], *,
                    runner_href: Callable[[str], str] | None = None,
                    runner_controls: Callable[[Mapping[str, Any]], str] | None = None) -> str:
    """Runners whose photos keep disagreeing with their registration: the strongest signal.

    The review server links each bib to its runner view and adds the runner's buttons.
    """
    if not suspects:
        return ""
    rows = []
    for suspect in suspects:
        photos = ", ".join(
            f'<a href="#" class="photo-link" data-key="{_e(str(photo).split("/", 1)[-1])}">'
            f"{_e(str(photo).split('/', 1)[-1])}</a>"
            for photo in _as_list(suspect.get("photos")))
        bib = str(suspect.get("bib", ""))
        bib_html = (f'<a href="{_e(runner_href(bib))}">#{_e(bib)}</a>' if runner_href
                    else f"#{_e(bib)}")
        status = str(suspect.get("status") or "")
        rows.append(
            f'<tr data-bib="{_e(bib)}" data-status="{_e(status)}"><td class="bib">{bib_html}</td>'
            f'<td><span class="status s-{_e(status)}">{_e(status)}</span></td>'
            f'<td>{_e(suspect.get("inconsistent", 0))}</td>'
            f'<td>{_e(suspect.get("consistent", 0))}</td>'
            f'<td>{_e(len(_as_list(suspect.get("dismissed_photos"))))}</td>'
            f'<td>{_e(len(_as_list(suspect.get("confirmed_photos"))))}</td><td>{photos}</td>'
            + (f"<td>{runner_controls(suspect)}</td>" if runner_controls else "")
            + "</tr>")
    return (
        '<section class="suspects" id="suspects"><h2>Suspects '
        f'<span class="muted">({len(suspects)}): runners whose photos repeatedly disagree '
        "with their registration; review the photos before any decision</span></h2>"
        "<table><thead><tr><th>Bib</th><th>Status</th><th>Inconsistent photos</th>"
        "<th>Consistent photos</th><th>Dismissed</th><th>Confirmed</th><th>Photos</th>"
        + ("<th>Decide</th>" if runner_controls else "")
        + f"</tr></thead><tbody>{''.join(rows)}</tbody></table></section>")


def render_page(records: list[dict[str, Any]], cards: list[str],
                suspects: Sequence[Mapping[str, Any]] = ()) -> str:
    counts = Counter(verdict_of(record) for record in records)
    attention = sum(counts[v] for v in ATTENTION_VERDICTS)
    filters = "".join(
        f'<label class="filter v-{verdict.lower()}" title="{_e(VERDICT_HELP[verdict])}">'
        f'<input type="checkbox" name="verdict" value="{verdict}"'
        f"{'' if verdict == 'PASS' else ' checked'}>"
        f'<span>{verdict} <b class="count">{counts[verdict]}</b></span></label>'
        for verdict in VERDICT_ORDER
    )
    totals = " · ".join(f"{counts[v]} {v}" for v in VERDICT_ORDER if counts[v])
    empty_message = (
        "Every photo passed: nothing needs attention." if records else "No photos were checked."
    )
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>racecheck review: {attention} photo{"s" if attention != 1 else ""} to check</title>
<style>{_CSS}</style>
</head>
<body>
<header class="top">
  <div class="title">
    <h1>racecheck review</h1>
    <p class="totals"><b id="attention-count">{attention}</b> of
      <b id="total-count">{len(records)}</b> photos need attention
      <span class="muted">({_e(totals) or "nothing checked"})</span></p>
  </div>
  <form class="filters" id="filters" onsubmit="return false">
    {filters}
    <label class="undecided"><input type="checkbox" id="undecided"> Undecided only</label>
    <input type="search" id="search" placeholder="Bib or file name" aria-label="Search">
  </form>
</header>
<p class="legend">Boxes: a bib and the face it was matched to share a colour, joined by a line;
grey boxes are faces matched to no bib; dashed boxes are text that was read but not taken as a
bib. <span id="shown-count"></span></p>
{render_suspects(suspects)}
<main id="cards">
{"".join(cards)}
</main>
<p id="empty" class="empty"{"" if attention == 0 else " hidden"}>{empty_message}</p>
<script>{_JS}</script>
</body>
</html>
"""


_CSS = """
.decided { flex:none; margin-left:auto; padding:2px 8px; border-radius:6px; font-size:12px;
  font-weight:700; border:2px solid currentColor; }
.d-dismissed { color:#546e7a; } .d-confirmed { color:var(--fail); }
.decision { margin:8px 0; padding:8px 10px; border-radius:8px; background:#f6f8fa;
  border:1px solid var(--line); font-size:13px; }
.history { margin:0 0 6px; padding-left:20px; }
.history time { color:var(--muted); margin-left:4px; }
.history .note { display:block; font-style:italic; }
.status { font-weight:700; text-transform:uppercase; font-size:12px; }
.s-suspect { color:var(--fail); } .s-confirmed { color:#8e1b1b; } .s-cleared { color:var(--pass); }
.undecided { color:#fff; font-size:13px; }
.suspects { margin:14px 24px 0; padding:12px 16px; background:#fff; border-radius:10px;
  border-left:6px solid var(--fail); box-shadow:0 1px 3px rgba(0,0,0,.12); }
.suspects h2 { margin:0 0 8px; font-size:16px; }
.suspects .muted { font-weight:400; color:var(--muted); font-size:13px; }
.suspects table { border-collapse:collapse; width:100%; font-size:14px; }
.suspects th, .suspects td { text-align:left; padding:4px 10px 4px 0;
  border-bottom:1px solid var(--line); }
.suspects .bib { font-weight:700; }
:root { --fail:#c62828; --review:#e08600; --error:#6a1b9a; --rejected:#546e7a; --pass:#2e7d32;
  --ink:#1c2530; --muted:#66727f; --line:#dde3ea; --bg:#f3f5f8; }
* { box-sizing: border-box; }
body { margin:0; font:15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
  color:var(--ink); background:var(--bg); }
.top { position:sticky; top:0; z-index:10; display:flex; flex-wrap:wrap; gap:12px 24px;
  align-items:center; justify-content:space-between; padding:12px 24px;
  background:#14202e; color:#fff; box-shadow:0 2px 6px rgba(0,0,0,.25); }
.top h1 { margin:0; font-size:20px; letter-spacing:.02em; }
.totals { margin:2px 0 0; color:#cfd8e3; }
.totals b { color:#fff; }
.top .muted { color:#9fb0c2; }
.filters { display:flex; flex-wrap:wrap; gap:8px; align-items:center; }
.filter { cursor:pointer; user-select:none; }
.filter input { position:absolute; opacity:0; pointer-events:none; }
.filter span { display:inline-block; padding:5px 12px; border-radius:999px; font-weight:600;
  font-size:13px; border:2px solid var(--c); color:#fff; opacity:.55; }
.filter input:checked + span { background:var(--c); opacity:1; }
.filter input:focus-visible + span { outline:2px solid #fff; outline-offset:2px; }
.filter .count { margin-left:4px; padding:0 6px; border-radius:8px; background:rgba(0,0,0,.25); }
#search { padding:6px 10px; border-radius:6px; border:1px solid #40536a; background:#0d1620;
  color:#fff; min-width:180px; }
.legend { margin:14px 24px 0; color:var(--muted); font-size:13px; }
main { display:grid; grid-template-columns:repeat(auto-fill, minmax(440px, 1fr)); gap:18px;
  padding:14px 24px 40px; align-items:start; }
.card { background:#fff; border-radius:10px; border-top:6px solid var(--c);
  box-shadow:0 1px 3px rgba(0,0,0,.12); padding:14px 16px 12px; min-width:0; }
.card[hidden] { display:none; }
.v-fail { --c:var(--fail); } .v-review { --c:var(--review); } .v-error { --c:var(--error); }
.v-rejected { --c:var(--rejected); } .v-pass { --c:var(--pass); }
.card > header { display:flex; gap:10px; align-items:center; }
.verdict { flex:none; padding:3px 10px; border-radius:6px; background:var(--c); color:#fff;
  font-weight:700; font-size:13px; letter-spacing:.04em; }
.key { margin:0; font-size:15px; font-weight:600; overflow-wrap:anywhere;
  font-family:ui-monospace, "SF Mono", Menlo, Consolas, monospace; }
.summary { margin:8px 0 6px; }
.reasons, .findings { display:flex; flex-wrap:wrap; gap:6px; margin:6px 0; }
.reason { padding:2px 8px; border-radius:4px; font-size:12px; font-weight:700;
  font-family:ui-monospace, Menlo, Consolas, monospace; background:#fdecea; color:#8e1b1b;
  border:1px solid #f5c2bd; }
.reason.warn { background:#fff4e0; color:#7a4a00; border-color:#f3d29b; }
.reason.info { background:#eef1f4; color:#4b5966; border-color:#d5dce3; }
.error { margin:8px 0; padding:8px 10px; border-radius:6px; background:#f3e5f5; color:#4a148c;
  font-family:ui-monospace, Menlo, Consolas, monospace; font-size:13px; overflow-wrap:anywhere; }
.photo { display:flex; justify-content:center; margin:10px 0; border-radius:6px;
  background:#0b1118; }
.frame { position:relative; line-height:0; max-width:100%; }
.frame img { display:block; max-width:100%; max-height:560px; width:auto; height:auto; }
.photo.missing { padding:22px 16px; line-height:1.4; text-align:center; color:var(--muted);
  font-size:13px; background:#f1f3f6; border:1px dashed #c3ccd6; }
.box { position:absolute; border:3px solid var(--c); border-radius:3px;
  box-shadow:0 0 0 1px rgba(0,0,0,.7), inset 0 0 0 1px rgba(0,0,0,.5); pointer-events:auto; }
.box.face.unlinked { border-style:solid; border-width:2px; }
.box.near-miss { border:2px dashed var(--c); box-shadow:0 0 0 1px rgba(0,0,0,.6); }
.box .tag { position:absolute; left:-3px; bottom:100%; margin-bottom:2px; padding:1px 5px;
  line-height:1.3; font-size:12px; font-weight:700; white-space:nowrap; color:#000;
  background:var(--c); border-radius:3px; }
.box.face .tag { bottom:auto; top:100%; margin:2px 0 0; }
.box.bib.inconsistent { border-width:4px; }
svg.links { position:absolute; inset:0; width:100%; height:100%; pointer-events:none; }
svg.links line { stroke-width:2.5; stroke-dasharray:6 4; vector-effect:non-scaling-stroke;
  filter:drop-shadow(0 0 1px #000); }
.link { border:1px solid var(--line); border-radius:8px; padding:8px 10px; margin:8px 0; }
.link.inconsistent { border-color:#f3b3ad; background:#fff8f7; }
.link.consistent { border-color:#c6e5c8; }
.link-head { display:flex; gap:8px; align-items:center; margin-bottom:4px; }
.swatch { width:14px; height:14px; border-radius:3px; background:var(--c);
  box-shadow:0 0 0 1px rgba(0,0,0,.35); }
.bib-number { font-weight:800; font-size:16px; }
.runner-name { color:var(--muted); }
.outcome { margin-left:auto; font-size:12px; font-weight:700; text-transform:uppercase;
  color:var(--muted); }
.link.inconsistent .outcome { color:var(--fail); }
.link.consistent .outcome { color:var(--pass); }
table.compare { width:100%; border-collapse:collapse; font-size:14px; }
.compare th, .compare td { text-align:left; padding:3px 6px; border-bottom:1px solid var(--line); }
.compare thead th { font-size:12px; color:var(--muted); font-weight:600; }
.compare tbody th { width:84px; white-space:nowrap; color:var(--muted); font-weight:600; }
.compare tr.mismatch td { background:#fdecea; font-weight:700; color:#8e1b1b; }
.compare tr.mismatch th::after { content:" ≠"; color:var(--fail); font-weight:800; }
.muted { color:var(--muted); font-weight:400; }
details.more { margin-top:6px; font-size:13px; }
details.more summary { cursor:pointer; color:var(--muted); }
details.more dl { display:grid; grid-template-columns:max-content 1fr; gap:2px 12px; margin:6px 0; }
details.more dt { color:var(--muted); }
details.more dd { margin:0; overflow-wrap:anywhere; }
details.more ul { margin:0; padding-left:18px; }
.empty { margin:40px 24px; text-align:center; font-size:18px; color:var(--muted); }
@media (max-width:560px) { main { grid-template-columns:1fr; padding:12px; } }
"""

_JS = """
(function () {
  var boxes = Array.prototype.slice.call(document.querySelectorAll('#filters input[name=verdict]'));
  var search = document.getElementById('search');
  var undecided = document.getElementById('undecided');
  var cards = Array.prototype.slice.call(document.querySelectorAll('#cards .card'));
  var shown = document.getElementById('shown-count');
  var empty = document.getElementById('empty');
  var attention = cards.filter(function (c) { return c.dataset.verdict !== 'PASS'; }).length;
  function apply() {
    var wanted = {};
    boxes.forEach(function (box) { wanted[box.value] = box.checked; });
    var term = search.value.trim().toLowerCase();
    var visible = 0;
    cards.forEach(function (card) {
      var show = !!wanted[card.dataset.verdict] &&
        (!term || card.dataset.search.indexOf(term) !== -1) &&
        (!undecided.checked || !card.dataset.decision);
      card.hidden = !show;
      if (show) { visible += 1; }
    });
    shown.textContent = 'Showing ' + visible + ' of ' + cards.length + ' photos.';
    empty.hidden = visible !== 0;
    if (visible === 0 && cards.length && attention > 0) {
      empty.textContent = 'No photo matches these filters.';
    }
  }
  boxes.forEach(function (box) { box.addEventListener('change', apply); });
  search.addEventListener('input', apply);
  undecided.addEventListener('change', apply);
  document.querySelectorAll('.photo-link').forEach(function (link) {
    link.addEventListener('click', function (event) {
      event.preventDefault();
      search.value = link.dataset.key;
      apply();
      document.getElementById('cards').scrollIntoView();
    });
  });
  apply();
})();
"""
