"""A Secrets Manager endpoint over HTTP, backed by the in-process moto stack.

moto's own server mode needs Flask, which the project does not install; this stand-in is enough
for the four operations a rotation uses (and any other JSON-protocol call): it decodes the
``X-Amz-Target`` operation and its JSON body, replays them on the (mocked) boto3 client it was
given and answers in the JSON protocol botocore parses, errors included. Signatures are not
checked. It counts every operation it serves, so a function running in *another process*
(``SECRETS_MANAGER_ENDPOINT``) can be measured without moto in that process.
"""

from __future__ import annotations

import base64
import json
import socket
import threading
from collections import Counter
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any


def _plain(value: Any) -> Any:
    """A boto3 response value back in wire form (timestamps as epoch seconds, blobs base64)."""
    if isinstance(value, datetime):
        return value.timestamp()
    if isinstance(value, bytes | bytearray):
        return base64.b64encode(bytes(value)).decode()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items() if k != "ResponseMetadata"}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


class SecretsManagerEndpoint:
    """``with SecretsManagerEndpoint(client) as endpoint: ... endpoint.url ...``"""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.calls: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True,
                                        name="secretsmanager-endpoint")

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def __enter__(self) -> SecretsManagerEndpoint:
        self._thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def reset_counts(self) -> None:
        with self._lock:
            self.calls.clear()

    def _serve(self, operation: str, params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        from botocore import xform_name
        from botocore.exceptions import ClientError

        with self._lock:
            self.calls[operation] += 1
        try:
            method = getattr(self.client, xform_name(operation))
        except AttributeError:
            return 400, {"__type": "UnknownOperationException", "message": operation}
        try:
            return 200, _plain(method(**params))
        except ClientError as exc:
            error = exc.response.get("Error", {})
            status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 400)
            return status, {"__type": error.get("Code", "ServiceException"),
                            "message": error.get("Message", "")}

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                # Headers and body go out in two writes: without this, Nagle's algorithm and the
                # client's delayed ACK add ~40 ms to every call.
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def do_POST(self) -> None:
                target = self.headers.get("X-Amz-Target", "")
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b"{}"
                operation = target.rpartition(".")[2]
                status, answer = endpoint._serve(operation, json.loads(body or b"{}"))
                raw = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/x-amz-json-1.1")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def log_message(self, format: str, *args: Any) -> None:
                return  # quiet

        return Handler
