"""Decide from an image's first bytes whether Rekognition can and should look at it.

Only the header is parsed (Pillow's ``Image.open`` is lazy): the pixels are never decoded
here, so a 15 MB photo or a decompression bomb costs one small ranged read.

The same bytes give the time the photo was taken: a JPEG's EXIF block is an APP1 segment
(at most 64 KiB) that comes before the frame header, and Pillow's JPEG reader keeps every
segment up to the start of the scan in ``info["exif"]`` while it opens the file, so once
the dimensions are known the EXIF is too, without reading further.
"""

from __future__ import annotations

import io
import re
import warnings
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from PIL import ExifTags, Image, UnidentifiedImageError

from racecheck.core.settings import Settings

# Rekognition reads only these two formats.
SUPPORTED_FORMATS = ("JPEG", "PNG")


class HeaderIncomplete(Exception):
    """The bytes read so far end before the header does: read more."""


@dataclass(frozen=True, kw_only=True)
class ImageCheck:
    accepted: bool
    reasons: list[str] = field(default_factory=list)
    format: str | None = None
    width: int | None = None
    height: int | None = None
    size_bytes: int = 0
    bytes_read: int = 0
    detail: str = ""
    # EXIF DateTimeOriginal as ISO 8601, with the camera's UTC offset when it wrote one.
    taken_at: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _rejected(reason: str, *, size_bytes: int, bytes_read: int, detail: str,
              **known: Any) -> ImageCheck:
    return ImageCheck(accepted=False, reasons=[reason], size_bytes=size_bytes,
                      bytes_read=bytes_read, detail=detail, **known)


def inspect_header(head: bytes, *, size_bytes: int, settings: Settings) -> ImageCheck:
    """Check format, dimensions and size from the first bytes of a file.

    Raises ``HeaderIncomplete`` when ``head`` is shorter than the file and Pillow could not
    find the dimensions in it, so the caller can fetch a longer prefix.
    """
    read = len(head)
    if size_bytes == 0:
        return _rejected("EMPTY_FILE", size_bytes=0, bytes_read=read, detail="the file is empty")
    if size_bytes > settings.max_image_bytes:
        return _rejected(
            "FILE_TOO_LARGE", size_bytes=size_bytes, bytes_read=0,
            detail=f"{size_bytes} bytes is over the {settings.max_image_bytes}-byte limit")
    try:
        with warnings.catch_warnings():
            # Pillow warns (DecompressionBombWarning) before it raises; our own limit decides.
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(head)) as image:
                image_format = image.format or ""
                width, height = image.size
                taken_at = exif_taken_at(image)
    except Image.DecompressionBombError as error:
        return _rejected("PIXEL_BOMB", size_bytes=size_bytes, bytes_read=read, detail=str(error))
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        if read < size_bytes and _looks_like_supported_image(head):
            raise HeaderIncomplete(str(error)) from error
        reason = "CORRUPT_IMAGE" if _looks_like_supported_image(head) else "NOT_AN_IMAGE"
        return _rejected(reason, size_bytes=size_bytes, bytes_read=read,
                         detail=f"{type(error).__name__}: {error}")

    known: dict[str, Any] = {"format": image_format, "width": width, "height": height,
                             "taken_at": taken_at}
    if image_format not in SUPPORTED_FORMATS:
        return _rejected("UNSUPPORTED_FORMAT", size_bytes=size_bytes, bytes_read=read,
                         detail=f"{image_format} is not JPEG or PNG", **known)
    if width <= 0 or height <= 0:
        return _rejected("CORRUPT_IMAGE", size_bytes=size_bytes, bytes_read=read,
                         detail=f"impossible dimensions {width}x{height}", **known)
    pixels = width * height
    if pixels > settings.max_image_pixels:
        return _rejected(
            "PIXEL_BOMB", size_bytes=size_bytes, bytes_read=read,
            detail=f"{width}x{height} px is over {settings.max_image_pixels} pixels", **known)
    if max(width, height) > settings.max_image_side_px:
        return _rejected(
            "IMAGE_TOO_LARGE", size_bytes=size_bytes, bytes_read=read,
            detail=f"{width}x{height} px: a side exceeds {settings.max_image_side_px} px", **known)
    if pixels / size_bytes > settings.max_pixels_per_byte:
        # Real photos hold a few pixels per byte; thousands mean a decompression bomb.
        return _rejected(
            "PIXEL_BOMB", size_bytes=size_bytes, bytes_read=read,
            detail=f"{width}x{height} px declared in only {size_bytes} bytes", **known)
    if min(width, height) < settings.min_image_side_px:
        return _rejected(
            "IMAGE_TOO_SMALL", size_bytes=size_bytes, bytes_read=read,
            detail=f"{width}x{height} px: shorter side under {settings.min_image_side_px} px",
            **known)
    return ImageCheck(accepted=True, size_bytes=size_bytes, bytes_read=read, **known)


def _looks_like_supported_image(head: bytes) -> bool:
    return head.startswith(b"\xff\xd8\xff") or head.startswith(b"\x89PNG\r\n\x1a\n")


_EXIF_DATE_TIME = re.compile(r"^(\d{4}):(\d{2}):(\d{2}) (\d{2}):(\d{2}):(\d{2})$")
_EXIF_OFFSET = re.compile(r"^[+-]\d{2}:\d{2}$")


def exif_taken_at(image: Image.Image) -> str | None:
    """``DateTimeOriginal`` (+ ``SubSecTimeOriginal``, ``OffsetTimeOriginal``) as ISO 8601.

    None when the photo has no usable capture time. Metadata is optional and often written
    badly, so no EXIF problem ever rejects a photo.
    """
    try:
        exif = image.getexif().get_ifd(ExifTags.IFD.Exif)
        original = exif.get(ExifTags.Base.DateTimeOriginal)
        sub_seconds = exif.get(ExifTags.Base.SubsecTimeOriginal)
        offset = exif.get(ExifTags.Base.OffsetTimeOriginal)
    except Exception:  # Pillow raises many kinds of error on malformed EXIF
        return None
    match = _EXIF_DATE_TIME.match(_text(original))
    if match is None:
        return None
    try:
        year, month, day, hour, minute, second = (int(part) for part in match.groups())
        moment = datetime(year, month, day, hour, minute, second)
    except ValueError:  # "0000:00:00 00:00:00", the blank some cameras write
        return None
    digits = "".join(character for character in _text(sub_seconds) if character.isdigit())
    if digits:
        moment = moment.replace(microsecond=int(digits[:6].ljust(6, "0")))
    text = moment.isoformat(timespec="milliseconds" if digits else "seconds")
    zone = _text(offset)
    return text + zone if _EXIF_OFFSET.match(zone) else text


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    return str(value).strip().rstrip("\x00").strip() if value is not None else ""
