"""Where an alert sends its reader: the photo in the S3 console, and the review command.

An alert that only names ``s3://bucket/key`` leads nowhere: the console link opens the
object (for a person signed in to the account), and the ``racecheck review`` command opens
the photo with its evidence and the Confirm/Dismiss buttons.

The Lambdas learn where they run from their environment: ``AWS_REGION`` (set by Lambda)
and ``RACECHECK_STACK_NAME`` (set by the stack). A local run sets ``RACECHECK_LOCAL_DIR``
instead: its bucket exists only inside the run, so there is no console link.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import quote

STACK_NAME_ENV_VAR = "RACECHECK_STACK_NAME"
LOCAL_DIR_ENV_VAR = "RACECHECK_LOCAL_DIR"
DEFAULT_STACK_NAME = "Racecheck"


def console_host(region: str) -> str:
    """The console of the region's partition (China and GovCloud have their own)."""
    if region.startswith("cn-"):
        return "https://console.amazonaws.cn"
    if region.startswith("us-gov-"):
        return "https://console.amazonaws-us-gov.com"
    return "https://console.aws.amazon.com"


def console_object_url(*, region: str, bucket: str, key: str) -> str:
    """The S3 console page of one object; the key is encoded whole (slashes included)."""
    return (f"{console_host(region)}/s3/object/{quote(bucket, safe='')}"
            f"?region={quote(region, safe='')}&bucketType=general&prefix={quote(key, safe='')}")


@dataclass(frozen=True)
class ReviewLinks:
    """How alerts point at a photo: console links (AWS only) and review commands."""

    region: str | None = None
    stack_name: str = DEFAULT_STACK_NAME
    local_dir: str | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ReviewLinks:
        environ = os.environ if environ is None else environ
        local_dir = environ.get(LOCAL_DIR_ENV_VAR) or None
        region = environ.get("AWS_REGION") or environ.get("AWS_DEFAULT_REGION") or None
        return cls(region=None if local_dir else region,
                   stack_name=environ.get(STACK_NAME_ENV_VAR) or DEFAULT_STACK_NAME,
                   local_dir=local_dir)

    def _review(self, *options: str) -> str:
        where = (["--local", self.local_dir] if self.local_dir
                 else [] if self.stack_name == DEFAULT_STACK_NAME
                 else ["--stack", self.stack_name])
        return shlex.join(["racecheck", "review", *where, *options])

    def photo_ref(self, bucket: str, key: str) -> str:
        """How the review and decide commands name a photo: its key locally, else s3://."""
        return key if self.local_dir else f"s3://{bucket}/{key}"

    def photo_lines(self, bucket: str, key: str) -> list[str]:
        """The lines an alert adds under a photo: where to open it, how to review it."""
        lines = []
        if self.region:
            url = console_object_url(region=self.region, bucket=bucket, key=key)
            lines.append(f"  Open: {url}")
        lines.append(f"  Review: {self._review('--photo', self.photo_ref(bucket, key))}")
        return lines

    def runner_line(self, bib: str) -> str:
        return f"Review all photos of bib {bib}: {self._review('--bib', bib)}"
