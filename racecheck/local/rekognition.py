"""Answer the handlers' Rekognition calls locally, through botocore's own client.

A ``before-call`` hook on the handlers' Rekognition client returns the response before any
HTTP request is made. The request has already been validated against botocore's model by
then, and every response a backend gives is validated against the operation's output
shape here, so a backend cannot drift from what the real API returns.
"""

from __future__ import annotations

import base64
import json
import threading
from collections import Counter, OrderedDict
from collections.abc import Callable
from typing import Any, Protocol

from botocore.awsrequest import AWSResponse
from botocore.validate import validate_parameters

OPERATIONS = ("DetectText", "DetectFaces", "DetectModerationLabels")
# Photos whose bytes are kept for their next call: a few more than are ever in flight.
PHOTOS_KEPT = 8
# us-east-1 list price per image for these APIs in the first-million-a-month tier.
PRICE_PER_CALL_USD = {"DetectText": 0.001, "DetectFaces": 0.001, "DetectModerationLabels": 0.001}


class RekognitionBackend(Protocol):
    def __call__(self, operation: str, image: bytes, params: dict[str, Any]) -> dict[str, Any]:
        """Return the operation's response dict, or raise ``RekognitionError``."""
        ...


class RekognitionError(Exception):
    """A Rekognition error response, raised on the client as its modeled exception."""

    def __init__(self, code: str, message: str = "", status: int = 400) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message or code
        self.status = status


class _RawBody:
    def stream(self, **_: Any) -> Any:
        yield b""


def _http(status: int) -> AWSResponse:
    return AWSResponse("https://rekognition.local", status, {}, _RawBody())


class LocalRekognitionHook:
    """Registered on one Rekognition client; counts calls by operation."""

    def __init__(self, *, backend: RekognitionBackend,
                 fetch_s3_object: Callable[[str, str, str | None], bytes]) -> None:
        self._backend = backend
        self._fetch_s3_object = fetch_s3_object
        self._lock = threading.Lock()
        self.calls: Counter[str] = Counter()
        self._photos: OrderedDict[tuple[str, str, str], bytes] = OrderedDict()

    def install(self, client: Any) -> None:
        client.meta.events.register_first("before-call.rekognition", self._answer,
                                          unique_id="racecheck-local-rekognition")

    def uninstall(self, client: Any) -> None:
        client.meta.events.unregister("before-call.rekognition",
                                      unique_id="racecheck-local-rekognition")

    def _image_bytes(self, image: dict[str, Any]) -> bytes:
        if "Bytes" in image:
            return base64.b64decode(image["Bytes"])
        s3_object = image["S3Object"]
        bucket, name, version = (s3_object["Bucket"], s3_object["Name"],
                                 s3_object.get("Version"))
        if not version:
            return self._fetch_s3_object(bucket, name, None)
        # An object version never changes: a photo's three calls fetch it once.
        with self._lock:
            cached = self._photos.get((bucket, name, version))
        if cached is not None:
            return cached
        body = self._fetch_s3_object(bucket, name, version)
        with self._lock:
            self._photos[(bucket, name, version)] = body
            while len(self._photos) > PHOTOS_KEPT:
                self._photos.popitem(last=False)
        return body

    def _answer(self, model: Any, params: dict[str, Any], **_: Any) -> tuple[AWSResponse, dict]:
        operation = model.name
        request = json.loads(params["body"] or b"{}")
        with self._lock:
            self.calls[operation] += 1
        try:
            image = self._image_bytes(request["Image"])
            response = self._backend(operation, image, request)
        except RekognitionError as error:
            return _http(error.status), {
                "Error": {"Code": error.code, "Message": error.message},
                "ResponseMetadata": {"HTTPStatusCode": error.status},
            }
        validate_parameters(response, model.output_shape)
        return _http(200), {**response, "ResponseMetadata": {"HTTPStatusCode": 200}}

    def estimated_cost_usd(self) -> float:
        return sum(PRICE_PER_CALL_USD.get(op, 0.0) * count for op, count in self.calls.items())
