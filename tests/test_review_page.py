"""The HTML review page: what a race official sees first after `racecheck run`."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Mapping
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from racecheck.review import LINK_COLOURS, box_style, write_review_page

HOSTILE_KEY = "odd dir/<script>alert('x')</script> \"q\" +é 1.jpg"
BIB_BOX = {"Left": 0.40, "Top": 0.55, "Width": 0.20, "Height": 0.15}
FACE_BOX = {"Left": 0.42, "Top": 0.10, "Width": 0.16, "Height": 0.22}


class Element:
    def __init__(self, tag: str, attrs: dict[str, str | None]) -> None:
        self.tag = tag
        self.attrs = attrs

    @property
    def classes(self) -> set[str]:
        return set((self.attrs.get("class") or "").split())


class ElementCollector(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.elements: list[Element] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append(Element(tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def parse(page: Path) -> ElementCollector:
    collector = ElementCollector()
    collector.feed(page.read_text(encoding="utf-8"))
    return collector


def cards_of(parsed: ElementCollector) -> list[Element]:
    return [e for e in parsed.elements if e.tag == "article" and "card" in e.classes]


def full_record(key: str, verdict: str, **changes: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "key": key,
        "verdict": verdict,
        "reasons": ["GENDER_MISMATCH"] if verdict != "PASS" else [],
        "summary": "Bib 3631 is registered to a woman; the runner looks like a man.",
        "image": {"format": "JPEG", "width": 800, "height": 600, "size_bytes": 12345},
        "bibs": [{"number": "3631", "confidence": 97.1, "box": BIB_BOX}],
        "near_misses": [
            {
                "number": "2026",
                "confidence": 88.0,
                "box": {"Left": 0.05, "Top": 0.05, "Width": 0.2, "Height": 0.05},
                "why": "STOP_WORD",
            }
        ],
        "faces": [
            {
                "box": FACE_BOX,
                "confidence": 99.0,
                "age_low": 25,
                "age_high": 35,
                "gender": "Male",
                "gender_confidence": 96.0,
                "sunglasses": False,
                "occluded": False,
                "sharpness": None,
                "brightness": None,
            }
        ],
        "links": [
            {
                "bib": "3631",
                "bib_box": BIB_BOX,
                "face_index": 0,
                "registered": {
                    "gender": "F",
                    "age_min": 18,
                    "age_max": 39,
                    "category": "18-39",
                    "name": "Ana",
                },
                "estimated": {
                    "gender": "Male",
                    "gender_confidence": 96.0,
                    "age_low": 25,
                    "age_high": 35,
                },
                "findings": ["GENDER_MISMATCH"] if verdict != "PASS" else [],
                "outcome": "inconsistent" if verdict != "PASS" else "consistent",
            }
        ],
        "moderation_labels": [],
        "error": None,
        "recorded_at": "2026-11-22T01:00:00Z",
    }
    record.update(changes)
    return record


def write_photo(path: Path, size: tuple[int, int] = (800, 600), colour: Any = (128, 128, 128)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path, "JPEG", quality=90)


@pytest.fixture
def mixed_run(tmp_path: Path) -> tuple[list[dict[str, Any]], Path]:
    """Photos and records for each verdict, plus a corrupt JPEG and a text file."""
    photos = tmp_path / "photos_in"
    records = [
        full_record("fail.jpg", "FAIL"),
        full_record("review.jpg", "REVIEW"),
        full_record("pass-1.jpg", "PASS"),
        full_record("pass-2.jpg", "PASS"),
        {"key": "broken.jpg", "verdict": "ERROR", "reasons": ["UNREADABLE"], "error": "OSError"},
        {"key": "notes.txt", "verdict": "REJECTED", "reasons": ["NOT_AN_IMAGE"], "image": None},
    ]
    for name in ("fail.jpg", "review.jpg", "pass-1.jpg", "pass-2.jpg"):
        write_photo(photos / name)
    write_photo(photos / "whole.jpg")
    (photos / "broken.jpg").write_bytes((photos / "whole.jpg").read_bytes()[:400])
    (photos / "whole.jpg").unlink()
    (photos / "notes.txt").write_text("not a photo", encoding="utf-8")
    return records, photos


# ----------------------------------------------------------------------------- structure


def test_given_mixed_verdicts_when_written_then_only_attention_cards_are_visible(
    mixed_run: tuple[list[dict[str, Any]], Path], tmp_path: Path
) -> None:
    # given six photos, two of which passed
    records, photos = mixed_run
    # when the page is written
    page = write_review_page(records, photos_root=photos, out_dir=tmp_path / "out")
    # then every photo has a card, and the PASS ones start hidden
    cards = cards_of(parse(page))
    assert page == tmp_path / "out" / "review.html"
    assert len(cards) == len(records)
    visible = [c.attrs["data-verdict"] or "" for c in cards if "hidden" not in c.attrs]
    hidden = [c.attrs["data-verdict"] for c in cards if "hidden" in c.attrs]
    assert sorted(visible) == ["ERROR", "FAIL", "REJECTED", "REVIEW"]
    assert hidden == ["PASS", "PASS"]
    # and the worst verdict comes first
    assert cards[0].attrs["data-verdict"] == "FAIL"


def test_given_records_when_written_then_verdict_filters_carry_counts_and_pass_is_off(
    mixed_run: tuple[list[dict[str, Any]], Path], tmp_path: Path
) -> None:
    records, photos = mixed_run
    page = write_review_page(records, photos_root=photos, out_dir=tmp_path / "out")
    parsed = parse(page)
    filters = {
        e.attrs["value"]: "checked" in e.attrs
        for e in parsed.elements
        if e.tag == "input" and e.attrs.get("name") == "verdict"
    }
    assert filters == {
        "FAIL": True,
        "REVIEW": True,
        "ERROR": True,
        "REJECTED": True,
        "PASS": False,
    }
    html_text = page.read_text(encoding="utf-8")
    assert 'value="PASS"><span>PASS <b class="count">2</b>' in html_text
    assert 'value="FAIL" checked><span>FAIL <b class="count">1</b>' in html_text
    assert '<b id="attention-count">4</b>' in html_text
    assert '<b id="total-count">6</b>' in html_text


def test_given_hostile_strings_when_written_then_everything_is_escaped(tmp_path: Path) -> None:
    # given a key, summary, reason, bib, name and error holding markup and quotes
    photos = tmp_path / "in"
    write_photo(photos / HOSTILE_KEY)
    evil = "<img src=x onerror=alert(1)>\"'"
    record = full_record(HOSTILE_KEY, "FAIL", summary=evil, reasons=[evil], error=evil)
    record["links"][0]["registered"]["name"] = evil
    record["links"][0]["bib"] = evil
    record["bibs"][0]["number"] = evil
    # when written
    page = write_review_page([record], photos_root=photos, out_dir=tmp_path / "out")
    html_text = page.read_text(encoding="utf-8")
    # then no injected markup survives, and the text reads back unchanged
    assert "<script>alert" not in html_text
    assert "<img src=x" not in html_text
    assert html_text.count("<script>") == 1  # the page's own filter script
    parsed = parse(page)
    card = cards_of(parsed)[0]
    assert HOSTILE_KEY.lower() in (card.attrs["data-search"] or "")
    assert HOSTILE_KEY in "".join(parsed.text)
    assert evil in "".join(parsed.text)
    images = [e for e in parsed.elements if e.tag == "img"]
    assert [e.attrs["alt"] for e in images] == [HOSTILE_KEY]


def test_given_records_missing_fields_when_written_then_page_still_renders(
    tmp_path: Path,
) -> None:
    # given records with nothing but a key, nulls, wrong types, and no key at all
    records: list[dict[str, Any]] = [
        {"key": "only-key.jpg"},
        {
            "key": "nulls.jpg",
            "verdict": "REVIEW",
            "reasons": None,
            "bibs": None,
            "faces": None,
            "links": None,
            "image": None,
            "near_misses": None,
            "moderation_labels": None,
        },
        {
            "key": "odd.jpg",
            "verdict": "FAIL",
            "bibs": [{"number": "7"}],
            "faces": [{"box": {}}],
            "links": [{"bib": "7", "face_index": 9, "registered": None, "estimated": None}],
        },
        {"verdict": "weird"},
    ]
    # when written
    page = write_review_page(records, photos_root=tmp_path, out_dir=tmp_path / "out")
    # then each one gets a card; unknown verdicts are shown as ERROR rather than dropped
    cards = cards_of(parse(page))
    assert len(cards) == 4
    assert sorted(c.attrs["data-verdict"] or "" for c in cards) == [
        "ERROR",
        "ERROR",
        "FAIL",
        "REVIEW",
    ]
    html_text = page.read_text(encoding="utf-8")
    assert "not registered" in html_text
    assert "no face linked" in html_text


def test_given_no_attention_photos_when_written_then_page_says_so(tmp_path: Path) -> None:
    write_photo(tmp_path / "in" / "ok.jpg")
    page = write_review_page(
        [full_record("ok.jpg", "PASS")], photos_root=tmp_path / "in", out_dir=tmp_path / "out"
    )
    parsed = parse(page)
    empty = next(e for e in parsed.elements if e.attrs.get("id") == "empty")
    assert "hidden" not in empty.attrs
    assert "Every photo passed" in "".join(parsed.text)


# ----------------------------------------------------------------------------- overlays


def test_given_a_box_when_styled_then_fractions_become_clamped_percentages() -> None:
    assert box_style(BIB_BOX) == "left:40.000%;top:55.000%;width:20.000%;height:15.000%"
    # a box that spills over the right edge is cut at the edge
    assert box_style({"Left": 0.9, "Top": -0.1, "Width": 0.3, "Height": 0.2}) == (
        "left:90.000%;top:0.000%;width:10.000%;height:20.000%"
    )
    assert box_style({"Left": 0.1}) is None
    assert box_style(None) is None


def test_given_a_linked_bib_and_face_when_written_then_both_boxes_share_a_colour_and_a_line(
    tmp_path: Path,
) -> None:
    write_photo(tmp_path / "in" / "a.jpg")
    record = full_record("a.jpg", "FAIL")
    record["faces"].append(
        dict(record["faces"][0], box={"Left": 0.8, "Top": 0.1, "Width": 0.1, "Height": 0.1})
    )
    page = write_review_page([record], photos_root=tmp_path / "in", out_dir=tmp_path / "out")
    elements = parse(page).elements
    boxes = [e for e in elements if e.tag == "div" and "box" in e.classes]
    bib = next(e for e in boxes if "bib" in e.classes)
    linked_face = next(e for e in boxes if e.attrs.get("data-face") == "0")
    other_face = next(e for e in boxes if e.attrs.get("data-face") == "1")
    near_miss = next(e for e in boxes if "near-miss" in e.classes)
    assert (bib.attrs["style"] or "").startswith(box_style(BIB_BOX) or "?")
    assert f"--c:{LINK_COLOURS[0]}" in (bib.attrs["style"] or "")
    assert f"--c:{LINK_COLOURS[0]}" in (linked_face.attrs["style"] or "")
    assert "unlinked" in other_face.classes
    assert "STOP_WORD" in (near_miss.attrs["title"] or "")
    line = next(e for e in elements if e.tag == "line")
    assert (line.attrs["x1"], line.attrs["y1"]) == ("50.000", "62.500")  # bib centre
    assert (line.attrs["x2"], line.attrs["y2"]) == ("50.000", "21.000")  # face centre


# ----------------------------------------------------------------------------- thumbnails


def test_given_big_corrupt_and_text_files_when_written_then_only_real_images_get_thumbnails(
    tmp_path: Path,
) -> None:
    # given a 3000x2000 photo, a truncated JPEG and a text file
    photos = tmp_path / "in"
    write_photo(photos / "big one.jpg", size=(3000, 2000))
    write_photo(photos / "whole.jpg")
    (photos / "broken.jpg").write_bytes((photos / "whole.jpg").read_bytes()[:300])
    (photos / "notes.txt").write_text("hello", encoding="utf-8")
    records = [
        full_record("big one.jpg", "REVIEW"),
        full_record("broken.jpg", "ERROR"),
        full_record("notes.txt", "REJECTED"),
        full_record("gone.jpg", "ERROR"),
    ]
    # when written
    out = tmp_path / "out"
    page = write_review_page(records, photos_root=photos, out_dir=out)
    # then one downscaled JPEG exists, referenced relatively; the others have a card, no image
    thumbnails = list((out / "photos").iterdir())
    assert len(thumbnails) == 1
    with Image.open(thumbnails[0]) as thumbnail:
        assert thumbnail.format == "JPEG"
        assert thumbnail.size == (1280, 853)
    parsed = parse(page)
    sources = [e.attrs["src"] for e in parsed.elements if e.tag == "img"]
    assert sources == [f"photos/{thumbnails[0].name}"]
    assert len(cards_of(parsed)) == 4
    assert "".join(parsed.text).count("No preview") == 3


def test_given_many_photos_and_a_key_recorded_twice_then_each_key_has_one_thumbnail_read_once(
    tmp_path: Path,
) -> None:
    import threading

    # given twelve photos, one of them with two records (checked again), from a source
    # that counts what it is asked for
    photos = tmp_path / "in"
    keys = [f"runner {index}.jpg" for index in range(12)]
    for key in keys:
        write_photo(photos / key)
    records = [full_record(key, "REVIEW") for key in keys] + [full_record(keys[0], "PASS")]
    asked: list[str] = []
    threads: set[str] = set()

    def photo_source(record: Mapping[str, Any]) -> Path:
        asked.append(record["key"])
        threads.add(threading.current_thread().name)
        return photos / record["key"]

    # when written
    out = tmp_path / "out"
    page = write_review_page(records, out_dir=out, photo_source=photo_source)
    # then every key's photo was read once and every card shows its key's thumbnail
    assert sorted(asked) == sorted(keys)
    assert len(list((out / "photos").iterdir())) == len(keys)
    parsed = parse(page)
    sources = [e.attrs["src"] for e in parsed.elements if e.tag == "img"]
    assert len(sources) == len(records) and len(set(sources)) == len(keys)
    assert all((out / str(source)).is_file() for source in sources)
    # and none of it ran on the caller's thread
    assert threading.current_thread().name not in threads


def test_given_an_exif_rotated_photo_when_written_then_thumbnail_is_upright(
    tmp_path: Path,
) -> None:
    # given a landscape-stored JPEG tagged "rotate 90" (orientation 6), as phones write them
    photos = tmp_path / "in"
    photos.mkdir()
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.new("RGB", (400, 200), (90, 90, 90)).save(photos / "phone.jpg", exif=exif)
    # when written
    out = tmp_path / "out"
    write_review_page([full_record("phone.jpg", "REVIEW")], photos_root=photos, out_dir=out)
    # then the thumbnail is portrait, as Rekognition's boxes assume, with no tag left
    (thumbnail_path,) = (out / "photos").iterdir()
    with Image.open(thumbnail_path) as thumbnail:
        assert thumbnail.size == (200, 400)
        assert thumbnail.getexif().get(0x0112) in (None, 1)


# ----------------------------------------------------------------------------- browser

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
WINDOW = (1400, 1600)

PROBE_SCRIPT = """
<script>
window.addEventListener('load', function () {
  if (PROBE_CLICK_PASS) { document.querySelector('input[value=PASS]').click(); }
  var cards = Array.prototype.slice.call(document.querySelectorAll('#cards .card'));
  var visible = cards.filter(function (c) { return c.offsetParent !== null; });
  var firstCard = visible[0];
  var img = firstCard.querySelector('img');
  var bib = firstCard.querySelector('.box.bib');
  var ir = img.getBoundingClientRect();
  var br = bib.getBoundingClientRect();
  var probe = {
    visible: visible.map(function (c) { return c.dataset.verdict; }),
    shown: document.getElementById('shown-count').textContent,
    image: {left: ir.left, top: ir.top, width: ir.width, height: ir.height,
            natural: img.naturalWidth},
    bib: {left: (br.left - ir.left) / ir.width, top: (br.top - ir.top) / ir.height,
          width: br.width / ir.width, height: br.height / ir.height}
  };
  var out = document.createElement('pre');
  out.id = 'probe';
  out.textContent = JSON.stringify(probe);
  document.body.appendChild(out);
});
</script>
"""


def chromium(*arguments: str, user_data: Path) -> subprocess.CompletedProcess[str]:
    assert CHROMIUM is not None
    return subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            f"--user-data-dir={user_data}",
            f"--window-size={WINDOW[0]},{WINDOW[1]}",
            "--virtual-time-budget=5000",
            *arguments,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def probe_page(page: Path, *, click_pass: bool, tmp_path: Path) -> dict[str, Any]:
    script = PROBE_SCRIPT.replace("PROBE_CLICK_PASS", "true" if click_pass else "false")
    probe = page.with_name(f"probe-{click_pass}.html")
    probe.write_text(
        page.read_text(encoding="utf-8").replace("</body>", script + "</body>"), encoding="utf-8"
    )
    result = chromium("--dump-dom", probe.as_uri(), user_data=tmp_path / f"ud-{click_pass}")
    parsed = ElementCollector()
    parsed.feed(result.stdout)
    marker = '<pre id="probe">'
    assert marker in result.stdout, f"probe did not run; chromium said: {result.stderr[-2000:]}"
    start = result.stdout.index(marker) + len(marker)
    raw = result.stdout[start : result.stdout.index("</pre>", start)]
    return dict(json.loads(raw.replace("&quot;", '"').replace("&amp;", "&")))


@pytest.mark.browser
@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium absent: apt-get install chromium")
def test_given_a_written_page_when_opened_in_chromium_then_it_shows_attention_cards_with_boxes(
    mixed_run: tuple[list[dict[str, Any]], Path], tmp_path: Path
) -> None:
    # given a page written from six records, moved away from where it was written
    records, photos = mixed_run
    written = write_review_page(records, photos_root=photos, out_dir=tmp_path / "written")
    moved_dir = tmp_path / "moved elsewhere"
    shutil.move(written.parent, moved_dir)
    page = moved_dir / "review.html"

    # when Chromium runs the page's script with the default filters
    default_view = probe_page(page, click_pass=False, tmp_path=tmp_path)
    # then the four attention photos show, FAIL first, and the PASS ones do not
    assert default_view["visible"] == ["FAIL", "REVIEW", "ERROR", "REJECTED"]
    assert default_view["shown"] == "Showing 4 of 6 photos."
    # and the thumbnail loaded from the moved folder, with the bib box over the bib's place
    assert default_view["image"]["natural"] == 800
    for side in ("left", "top", "width", "height"):
        assert default_view["bib"][side] == pytest.approx(BIB_BOX[side.capitalize()], abs=0.01)

    # when the PASS filter is switched on
    with_pass = probe_page(page, click_pass=True, tmp_path=tmp_path)
    # then all six photos show
    assert sorted(with_pass["visible"]) == sorted(r["verdict"] for r in records)

    # when a screenshot is taken of the same layout
    screenshot = tmp_path / "review.png"
    result = chromium(
        f"--screenshot={screenshot}",
        page.with_name("probe-False.html").as_uri(),
        user_data=tmp_path / "ud-shot",
    )
    assert screenshot.exists(), result.stderr[-2000:]
    # then the bib box's left border is drawn in the link colour on top of the grey photo
    image, bib = default_view["image"], default_view["bib"]
    border_x = round(image["left"] + bib["left"] * image["width"] + 1)
    middle_y = round(image["top"] + (bib["top"] + bib["height"] / 2) * image["height"])
    inside_x = round(image["left"] + (bib["left"] + bib["width"] / 2) * image["width"])
    expected = tuple(int(LINK_COLOURS[0][i : i + 2], 16) for i in (1, 3, 5))
    with Image.open(screenshot) as shot:
        rgb = shot.convert("RGB")
        border_pixel = rgb.getpixel((border_x, middle_y))
        inside_pixel = rgb.getpixel((inside_x, middle_y))
    assert isinstance(border_pixel, tuple) and isinstance(inside_pixel, tuple)
    assert all(abs(a - b) <= 12 for a, b in zip(border_pixel, expected, strict=True))
    assert all(abs(channel - 128) <= 12 for channel in inside_pixel)  # the photo shows through


def test_given_suspects_when_rendered_then_a_panel_lists_them_with_links_to_their_photos(
    tmp_path: Path,
) -> None:
    # given one suspect whose key holds characters that must be escaped
    suspects = [{"bib": "5078", "inconsistent": 2, "consistent": 0,
                 "photos": ["bucket/km 5/<a>.jpg", "bucket/km30.jpg"]}]
    # when the page is written
    page = write_review_page([], photos_root=tmp_path, out_dir=tmp_path / "out",
                             suspects=suspects).read_text(encoding="utf-8")
    # then the panel names the bib and links each photo by its key, escaped
    assert 'id="suspects"' in page and "#5078" in page
    assert 'data-key="km 5/&lt;a&gt;.jpg"' in page and "<a>.jpg" not in page
    assert page.count('class="photo-link"') == 2


def test_given_no_suspects_then_there_is_no_panel(tmp_path: Path) -> None:
    page = write_review_page([], photos_root=tmp_path, out_dir=tmp_path / "out")
    assert 'id="suspects"' not in page.read_text(encoding="utf-8")


def test_given_a_non_binary_runner_when_written_then_the_card_says_registered_x_not_compared(
    tmp_path: Path,
) -> None:
    # given a REVIEW photo of a runner registered X whose age does not fit
    photos = tmp_path / "in"
    write_photo(photos / "x.jpg")
    record = full_record("x.jpg", "REVIEW", reasons=["AGE_OUTSIDE_CATEGORY"])
    link = record["links"][0]
    link["registered"].update(gender="X", age_min=60, age_max=69, category="60-69")
    link["estimated"]["gender"] = "M"
    link.update(findings=["AGE_OUTSIDE_CATEGORY"], outcome="inconsistent")
    # when written
    page = write_review_page([record], photos_root=photos, out_dir=tmp_path / "out")
    html_text = page.read_text(encoding="utf-8")
    # then the registered gender reads X (non-binary), the estimate is marked as not
    # compared, and only the age row is flagged
    assert "<th>Gender</th><td>X (non-binary)</td><td>Male" in html_text
    assert '<span class="muted">(not compared)</span>' in html_text
    assert '<tr class=""><th>Gender</th>' in html_text
    assert '<tr class="mismatch"><th>Age</th>' in html_text


def test_given_a_short_read_near_registered_numbers_then_the_card_names_them(
    tmp_path: Path,
) -> None:
    # given a photo whose only read, 363, is shorter than the race's bibs and one digit
    # from two registered numbers (what Decide records as hints)
    photos = tmp_path / "in"
    write_photo(photos / "short.jpg")
    record = full_record("short.jpg", "REVIEW", hints=[
        {"read": "363", "why": "SHORT_READ", "registered": ["3631", "3639"]}])
    # when written
    page = write_review_page([record], photos_root=photos, out_dir=tmp_path / "out")
    # then the reviewer is told which runners' bibs the fragment may belong to
    text = " ".join(" ".join(parse(page).text).split())
    assert "Registered numbers nearby" in text
    assert "363 may be 3631, 3639 SHORT_READ" in text
