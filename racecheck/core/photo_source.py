"""Find the photo an S3 event names and read just enough of it to check its header."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import unquote_plus

from racecheck.core.image_check import HeaderIncomplete, ImageCheck, inspect_header
from racecheck.core.settings import Settings

FIRST_READ_BYTES = 64 * 1024
# A JPEG's dimensions follow its EXIF/XMP/ICC segments, which are rarely over a few hundred
# KiB; each further read is four times longer, up to the whole file.
READ_GROWTH = 4
_CONTENT_RANGE = re.compile(r"bytes \d+-\d+/(\d+)")


class PhotoNotFound(Exception):
    """Neither the key as delivered nor its URL-decoded form exists (deleted meanwhile?)."""


@dataclass(frozen=True, kw_only=True)
class Photo:
    bucket: str
    key: str
    version: str

    @property
    def photo(self) -> str:
        return f"{self.bucket}/{self.key}"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "photo": self.photo}

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Photo:
        return cls(bucket=raw["bucket"], key=raw["key"], version=raw["version"])

    def s3_object(self) -> dict[str, str]:
        """Rekognition's ``Image.S3Object`` for exactly this version."""
        reference = {"Bucket": self.bucket, "Name": self.key}
        if self.version != "null":
            reference["Version"] = self.version
        return reference


def candidate_keys(delivered_key: str) -> list[str]:
    """The key as delivered first, then its URL-decoded form if that differs.

    S3 event notifications URL-encode keys (a space becomes ``+``), EventBridge events carry
    them as they are; a literal ``+`` in a real key means the decoded form can be wrong, so
    the delivered key is always tried first.
    """
    decoded = unquote_plus(delivered_key)
    return [delivered_key] if decoded == delivered_key else [delivered_key, decoded]


def _ranged_get(s3: Any, *, bucket: str, key: str, version: str | None, last_byte: int
                ) -> tuple[bytes, int, str]:
    request: dict[str, Any] = {"Bucket": bucket, "Key": key, "Range": f"bytes=0-{last_byte}"}
    if version and version != "null":
        request["VersionId"] = version
    response = s3.get_object(**request)
    body = response["Body"].read()
    match = _CONTENT_RANGE.match(response.get("ContentRange") or "")
    total = int(match.group(1)) if match else int(response.get("ContentLength", len(body)))
    return body, total, response.get("VersionId") or version or "null"


def _error_code(error: Exception) -> str | None:
    return getattr(error, "response", {}).get("Error", {}).get("Code")


def _is_missing(error: Exception) -> bool:
    return _error_code(error) in ("NoSuchKey", "NoSuchVersion", "404", "InvalidArgument")


def _empty_object(s3: Any, *, bucket: str, key: str, version: str | None
                  ) -> tuple[bytes, int, str]:
    """S3 answers a ranged GET of a 0-byte object with 416 InvalidRange: confirm the size."""
    request: dict[str, Any] = {"Bucket": bucket, "Key": key}
    if version and version != "null":
        request["VersionId"] = version
    response = s3.head_object(**request)
    return b"", int(response.get("ContentLength", 0)), (
        response.get("VersionId") or version or "null")


def check_photo(s3: Any, *, bucket: str, delivered_key: str, version: str | None,
                settings: Settings) -> tuple[Photo, ImageCheck]:
    """Locate the object, then read growing prefixes until its header is understood."""
    for key in candidate_keys(delivered_key):
        try:
            head, total, resolved_version = _ranged_get(
                s3, bucket=bucket, key=key, version=version, last_byte=FIRST_READ_BYTES - 1)
        except Exception as error:
            if _is_missing(error):
                continue
            if _error_code(error) != "InvalidRange":
                raise
            head, total, resolved_version = _empty_object(s3, bucket=bucket, key=key,
                                                          version=version)
        break
    else:
        raise PhotoNotFound(f"s3://{bucket}/{delivered_key} (version {version}) does not exist")

    photo = Photo(bucket=bucket, key=key, version=resolved_version)
    if total > settings.max_image_bytes:
        return photo, inspect_header(head, size_bytes=total, settings=settings)
    while True:
        try:
            return photo, inspect_header(head, size_bytes=total, settings=settings)
        except HeaderIncomplete:
            head, total, _ = _ranged_get(s3, bucket=bucket, key=key, version=resolved_version,
                                         last_byte=len(head) * READ_GROWTH - 1)
