"""A stand-in model server for fake containers that need to answer, not to predict.

It speaks the part of the model server's HTTP contract the runtime relies on (`/readyz`
with the model it serves, the version from `MODEL_URI`, as model_server's
`ReadyResponse`; `/livez`; `POST /admin/model` signed with the admin key, checked as the
real server checks it (docs/server-contract.md, "Admin requests are signed"; stdlib only;
no replay memory), not a Docker behaviour) and is ready in a
fraction of a second, so tests of ownership, pruning and faults
do not pay a real model load. Run as `python stub_server.py PORT`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def _version(model_uri: str) -> str:
    return model_uri.rstrip("/").rsplit("/", 1)[-1]


def _signed(stamp: str | None, given: str | None, path: str, body: bytes) -> bool:
    key = os.environ.get("ALIASFLOW_ADMIN_TOKEN", "")
    if not key or not stamp or not given or not stamp.isdigit():
        return False
    if abs(time.time() - int(stamp)) > 60:
        return False
    signed = f"{stamp}.POST.{path}.".encode() + body
    digest = hmac.new(key.encode(), signed, hashlib.sha256).digest()
    return hmac.compare_digest(given, f"v1,{base64.b64encode(digest).decode()}")


class _Handler(BaseHTTPRequestHandler):
    model_uri = os.environ.get("MODEL_URI", "models:/stub/0")

    def log_message(self, format: str, *args: object) -> None:
        sys.stdout.write(f"stub: {format % args}\n")
        sys.stdout.flush()

    def _send(self, status: int, body: object) -> None:
        raw = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def do_GET(self) -> None:
        if self.path == "/readyz":
            uri = type(self).model_uri
            model = {"name": uri.split("/")[1], "version": _version(uri), "run_id": None}
            self._send(200, {"status": "ready", "model": model})
        elif self.path == "/livez":
            self._send(200, {"status": "alive"})
        else:
            self._send(404, {"detail": "not found"})

    def do_POST(self) -> None:
        if self.path != "/admin/model":
            self._send(404, {"detail": "not found"})
            return
        raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if not _signed(
            self.headers.get("X-Aliasflow-Timestamp"),
            self.headers.get("X-Aliasflow-Signature"),
            self.path,
            raw,
        ):
            self._send(401, {"detail": "signature does not match this server's admin key"})
            return
        body = json.loads(raw or b"{}")
        type(self).model_uri = str(body["model_uri"])
        self._send(200, {"model_uri": body["model_uri"], "version": _version(body["model_uri"])})


def main() -> None:
    port = int(sys.argv[1])
    print(f"stub model server on 127.0.0.1:{port} for {_Handler.model_uri}", flush=True)
    ThreadingHTTPServer(("127.0.0.1", port), _Handler).serve_forever()


if __name__ == "__main__":
    main()
