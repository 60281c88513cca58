"""A small demo race built from nothing but the installed packages: no download at run time.

The people are real sample photographs that ship inside pinned wheels (scikit-image's
`astronaut.png` and `camera.png`, matplotlib's `grace_hopper.jpg`, scikit-image's cat
`chelsea.png`); race bibs are rendered onto their torsos here, with Pillow's bundled font.
A registration CSV matches them, with one deliberate swap.
"""

from __future__ import annotations

import csv
import importlib.util
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image, ImageDraw, ImageEnhance, ImageFilter, ImageFont, ImageOps

PHOTOS_DIR_NAME = "photos"
RUNNERS_CSV_NAME = "runners.csv"
ABOUT_NAME = "ABOUT.txt"
RACE_NAME = "CITY MARATHON"
# The sample photos are 512 px: doubling them gives camera-like sizes and room for a bib
# whose digits are as large as on real race photos.
UPSCALE = 2

PROVENANCE = (
    "The photos are real sample photographs shipped inside pinned Python packages, with race "
    "bibs rendered onto them by racecheck: scikit-image's astronaut.png (Eileen Collins, NASA, "
    "public domain) and camera.png (CC0, Lav Varshney), matplotlib's grace_hopper.jpg (U.S. "
    "Navy, public domain) and scikit-image's chelsea.png (a cat, CC0, Stefan van der Walt). "
    "No real race, no real runner: the names in runners.csv are invented."
)


@dataclass(frozen=True)
class SamplePhoto:
    package: str
    relative_path: str


ASTRONAUT = SamplePhoto("skimage", "data/astronaut.png")
CAMERAMAN = SamplePhoto("skimage", "data/camera.png")
CAT = SamplePhoto("skimage", "data/chelsea.png")
GRACE_HOPPER = SamplePhoto("matplotlib", "mpl-data/sample_data/grace_hopper.jpg")


@dataclass(frozen=True)
class BibPlacement:
    """Where a bib goes on the original sample photo (centre and width in its pixels)."""

    number: str
    centre: tuple[int, int]
    width: int
    tilt_degrees: float
    band_colour: tuple[int, int, int]


@dataclass(frozen=True)
class DemoPhoto:
    key: str
    shows: str
    meant_verdicts: tuple[str, ...]
    bib: str | None = None
    bib_box: dict[str, float] | None = None


@dataclass(frozen=True)
class DemoSet:
    root: Path
    photos_dir: Path
    runners_csv: Path
    photos: tuple[DemoPhoto, ...]
    description: str
    runners: tuple[dict[str, str], ...] = field(default=())


RUNNERS: tuple[dict[str, str], ...] = (
    {
        "bib": "1234",
        "name": "Carla Reyes",
        "gender": "F",
        "category": "30-39",
        "club": "Harbour RC",
    },
    {
        "bib": "5078",
        "name": "Tom Becker",
        "gender": "M",
        "category": "60-69",
        "club": "Veterans AC",
    },
    {"bib": "2417", "name": "Ravi Patel", "gender": "M", "category": "18-29", "club": ""},
    {"bib": "3380", "name": "Mei Tanaka", "gender": "F", "category": "40-49", "club": "Harbour RC"},
    {"bib": "4105", "name": "Olga Ivanova", "gender": "F", "category": "50-59", "club": ""},
    {"bib": "6620", "name": "Jonas Berg", "gender": "M", "category": "30-39", "club": "Riverside"},
)
UNREGISTERED_BIB = "9031"

# Bib positions on the torso below each face, chosen by looking at the sample photos.
REGISTERED_ON_ASTRONAUT = BibPlacement("1234", (205, 385), 150, -3.0, (200, 32, 45))
SWAPPED_ON_ASTRONAUT = BibPlacement("5078", (307, 385), 150, 4.0, (200, 32, 45))
SWAPPED_AGAIN_ON_ASTRONAUT = BibPlacement("5078", (210, 390), 145, -5.0, (200, 32, 45))
UNREGISTERED_ON_HOPPER = BibPlacement(UNREGISTERED_BIB, (300, 515), 170, 2.0, (20, 90, 170))
REGISTERED_ON_CAMERAMAN = BibPlacement("2417", (125, 300), 110, 8.0, (200, 32, 45))


def sample_photo_path(sample: SamplePhoto) -> Path:
    """The file inside the installed package, found without importing the package."""
    spec = importlib.util.find_spec(sample.package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"racecheck demo needs the {sample.package!r} package installed (it ships the "
            "sample photos); install racecheck with its 'local' extra"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / sample.relative_path
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing from the installed {sample.package}")
    return path


def load_sample(sample: SamplePhoto) -> Image.Image:
    with Image.open(sample_photo_path(sample)) as opened:
        rgb = opened.convert("RGB")
    return rgb.resize((rgb.width * UPSCALE, rgb.height * UPSCALE), Image.Resampling.LANCZOS)


def render_bib(number: str, width: int, band_colour: tuple[int, int, int]) -> Image.Image:
    """A paper race bib (RGBA): coloured race band, big bold number, four safety pins."""
    height = round(width * 0.72)
    bib = Image.new("RGBA", (width, height), (0, 0, 0, 0))
    draw = ImageDraw.Draw(bib)
    radius = max(4, width // 28)
    draw.rounded_rectangle((0, 0, width - 1, height - 1), radius, fill=(247, 247, 242, 255))
    band_height = round(height * 0.2)
    draw.rounded_rectangle((0, 0, width - 1, band_height), radius, fill=(*band_colour, 255))
    draw.rectangle((0, band_height // 2, width - 1, band_height), fill=(*band_colour, 255))
    band_font = ImageFont.load_default(size=max(8, round(band_height * 0.62)))
    draw.text((width / 2, band_height / 2), RACE_NAME, font=band_font, fill="white", anchor="mm")

    number_font = _fit_font(draw, number, max_width=width * 0.86, max_height=height * 0.5)
    stroke = max(1, round(height * 0.022))
    draw.text(
        (width / 2, band_height + (height - band_height) * 0.47),
        number,
        font=number_font,
        fill=(18, 18, 22),
        anchor="mm",
        stroke_width=stroke,
        stroke_fill=(18, 18, 22),
    )
    footer_font = ImageFont.load_default(size=max(6, round(height * 0.075)))
    draw.text(
        (width / 2, height * 0.91),
        "RUN STRONG · HYDRATE",
        font=footer_font,
        fill=(120, 120, 125),
        anchor="mm",
    )
    for x, y in _pin_positions(width, height):
        _draw_safety_pin(draw, x, y, scale=width / 150)
    return bib


def _fit_font(
    draw: ImageDraw.ImageDraw, text: str, *, max_width: float, max_height: float
) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    size = round(max_height)
    while size > 8:
        font = ImageFont.load_default(size=size)
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
        if right - left <= max_width and bottom - top <= max_height:
            return font
        size -= 2
    return ImageFont.load_default(size=8)


def _pin_positions(width: int, height: int) -> list[tuple[float, float]]:
    inset_x, inset_y = width * 0.06, height * 0.08
    return [
        (inset_x, inset_y + height * 0.2),
        (width - inset_x, inset_y + height * 0.2),
        (inset_x, height - inset_y),
        (width - inset_x, height - inset_y),
    ]


def _draw_safety_pin(draw: ImageDraw.ImageDraw, x: float, y: float, *, scale: float) -> None:
    length, thick = 11 * scale, max(1, round(1.6 * scale))
    draw.line((x - length / 2, y, x + length / 2, y - 2 * scale), fill=(150, 152, 158), width=thick)
    draw.line((x - length / 2, y + 2 * scale, x + length / 2, y), fill=(190, 192, 198), width=thick)
    head = 2.2 * scale
    draw.ellipse(
        (x + length / 2 - head, y - 2 * scale - head, x + length / 2 + head, y - 2 * scale + head),
        fill=(120, 122, 128),
    )


def place_bib(photo: Image.Image, placement: BibPlacement) -> dict[str, float]:
    """Paste a rendered bib onto the photo (in place); return its box as Rekognition does."""
    bib = render_bib(placement.number, placement.width * UPSCALE, placement.band_colour)
    tilted = bib.rotate(placement.tilt_degrees, resample=Image.Resampling.BICUBIC, expand=True)
    centre_x, centre_y = (c * UPSCALE for c in placement.centre)
    left = round(centre_x - tilted.width / 2)
    top = round(centre_y - tilted.height / 2)
    # A soft shadow and a slight take-up of the shirt's light make the paper sit on the body.
    alpha = tilted.getchannel("A")
    shadow = Image.new("RGBA", tilted.size, (0, 0, 0, 0))
    shadow.putalpha(alpha.point(lambda value: value * 0.45).filter(ImageFilter.GaussianBlur(4)))
    photo.paste(shadow, (left + 3 * UPSCALE, top + 3 * UPSCALE), shadow)
    region = photo.crop((left, top, left + tilted.width, top + tilted.height))
    lit = Image.blend(tilted.convert("RGB"), ImageOps.autocontrast(region).convert("RGB"), 0.08)
    photo.paste(lit, (left, top), alpha)
    return {
        "Left": max(left, 0) / photo.width,
        "Top": max(top, 0) / photo.height,
        "Width": min(tilted.width, photo.width - left) / photo.width,
        "Height": min(tilted.height, photo.height - top) / photo.height,
    }


def _save_jpeg(image: Image.Image, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, "JPEG", quality=90)


def build_demo_set(out_dir: Path) -> DemoSet:
    """Write `out_dir/photos/...`, `out_dir/runners.csv` and `out_dir/ABOUT.txt`."""
    photos_dir = out_dir / PHOTOS_DIR_NAME
    photos_dir.mkdir(parents=True, exist_ok=True)
    photos: list[DemoPhoto] = []

    def bib_photo(picture: Image.Image, placement: BibPlacement, key: str, shows: str,
                  meant: tuple[str, ...]) -> None:
        box = place_bib(picture, placement)
        _save_jpeg(picture, photos_dir / key)
        photos.append(DemoPhoto(key=key, shows=shows, meant_verdicts=meant,
                                bib=placement.number, bib_box=box))

    bib_photo(load_sample(ASTRONAUT), REGISTERED_ON_ASTRONAUT, "01 registered runner.jpg",
              "bib 1234 is registered to Carla Reyes (F, 30-39) and worn by a woman of about "
              "that age: nothing to report", ("PASS",))
    bib_photo(ImageOps.mirror(load_sample(ASTRONAUT)), SWAPPED_ON_ASTRONAUT, "02 bib swap.jpg",
              "deliberate swap: bib 5078 is registered to Tom Becker (M, 60-69) but worn by a "
              "woman in her thirties", ("FAIL", "REVIEW"))
    # A second photo of the same swap, further down the course: one photo is weak evidence,
    # two that agree make the runner a suspect (reported once).
    bib_photo(ImageEnhance.Brightness(load_sample(ASTRONAUT)).enhance(0.92),
              SWAPPED_AGAIN_ON_ASTRONAUT, "06 bib swap, km 30.jpg",
              "the same swap seen again later in the race: with two inconsistent photos, bib "
              "5078 becomes a suspect and one SUSPECT alert goes out", ("FAIL", "REVIEW"))
    bib_photo(load_sample(GRACE_HOPPER), UNREGISTERED_ON_HOPPER, "03 unregistered bib.jpg",
              f"bib {UNREGISTERED_BIB} is not in runners.csv (a bandit or a fake bib)",
              ("REVIEW",))

    _save_jpeg(load_sample(CAT), photos_dir / "04 no runner.jpg")
    photos.append(
        DemoPhoto(
            key="04 no runner.jpg",
            shows="a cat at the start line: no person, no bib",
            meant_verdicts=("PASS",),
        )
    )

    odd_key = "finish line/Zoë + Ravi (2).jpg"
    turned_away = load_sample(CAMERAMAN)
    box = place_bib(turned_away, REGISTERED_ON_CAMERAMAN)
    # The sample is black and white: a colour bib on it would look pasted on.
    _save_jpeg(ImageOps.grayscale(turned_away).convert("RGB"), photos_dir / odd_key)
    photos.append(
        DemoPhoto(
            key=odd_key,
            shows="an odd file name (folder, spaces, unicode, '+'); bib 2417 (Ravi Patel, "
            "M, 18-29) on a man seen side-on: the bib is indexed even if no face can be judged",
            meant_verdicts=("PASS", "REVIEW"),
            bib="2417",
            bib_box=box,
        )
    )

    whole = photos_dir / "01 registered runner.jpg"
    truncated_bytes = whole.read_bytes()
    (photos_dir / "05 truncated upload.jpg").write_bytes(
        truncated_bytes[: len(truncated_bytes) * 3 // 5]
    )
    photos.append(
        DemoPhoto(
            key="05 truncated upload.jpg",
            shows="a JPEG cut off mid-upload: its header passes, the detectors refuse its "
            "pixels as Rekognition would, and it is rejected as corrupt",
            meant_verdicts=("REJECTED", "ERROR"),
        )
    )

    (photos_dir / "notes.txt").write_text(
        "Photographer's notes: card 2, finish line, 10:42.\n", encoding="utf-8"
    )
    photos.append(
        DemoPhoto(
            key="notes.txt",
            shows="a text file dropped among the photos: rejected as not an image",
            meant_verdicts=("REJECTED",),
        )
    )

    runners_csv = out_dir / RUNNERS_CSV_NAME
    write_runners_csv(runners_csv, RUNNERS)
    description = describe(photos)
    (out_dir / ABOUT_NAME).write_text(description + "\n", encoding="utf-8")
    return DemoSet(
        root=out_dir,
        photos_dir=photos_dir,
        runners_csv=runners_csv,
        photos=tuple(photos),
        description=description,
        runners=RUNNERS,
    )


def write_runners_csv(path: Path, runners: tuple[dict[str, str], ...]) -> None:
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["bib", "name", "gender", "category", "club"])
        writer.writeheader()
        writer.writerows(runners)


def describe(photos: list[DemoPhoto]) -> str:
    lines = [PROVENANCE, "", "What each file is meant to show:"]
    lines += [f"- {photo.key}: {photo.shows}" for photo in photos]
    return "\n".join(lines)
