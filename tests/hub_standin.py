"""A local stand-in for the Hugging Face Hub API on 127.0.0.1: the endpoints `selfinstruct push` reaches
through `huggingface_hub` (HF_ENDPOINT points the library at it), recording what it was sent.

whoami-v2 (the token), repos/create, validate-yaml, preupload (every file "regular", so its bytes come
inline in the commit) and commit (NDJSON: a header, then each file base64-encoded).
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

TOKEN = "hf_standin_token"


class HubStandIn(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.created: list[dict[str, Any]] = []
        self.validated: list[dict[str, Any]] = []
        self.files: dict[str, dict[str, bytes]] = {}  # repo id -> path -> bytes
        self.commits: list[dict[str, Any]] = []
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def __enter__(self) -> HubStandIn:
        threading.Thread(target=self.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
        self.server_close()


class _Handler(BaseHTTPRequestHandler):
    server: HubStandIn

    def log_message(self, *args: object) -> None:
        pass

    def _send(self, status: int, payload: dict[str, Any]) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _authorized(self) -> bool:
        if self.headers.get("Authorization") == f"Bearer {TOKEN}":
            return True
        self._send(401, {"error": "Invalid credentials in Authorization header"})
        return False

    def _body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def do_GET(self) -> None:
        if self.path.startswith("/api/whoami-v2") and self._authorized():
            self._send(200, {"type": "user", "name": "tester", "auth": {"accessToken": {"role": "write"}}})
        elif not self.path.startswith("/api/whoami-v2"):
            self._send(404, {"error": f"not served here: {self.path}"})

    def do_POST(self) -> None:
        if not self._authorized():
            return
        body = self._body()
        path = self.path.split("?")[0]
        with self.server.lock:
            if path == "/api/repos/create":
                payload = json.loads(body)
                self.server.created.append(payload)
                repo = f"{payload['organization']}/{payload['name']}"
                self._send(200, {"url": f"{self.server.url}/datasets/{repo}", "name": repo})
            elif path == "/api/validate-yaml":
                self.server.validated.append(json.loads(body))
                self._send(200, {"errors": [], "warnings": []})
            elif "/preupload/" in path:
                files = json.loads(body)["files"]
                self._send(
                    200,
                    {
                        "files": [
                            {"path": f["path"], "uploadMode": "regular", "shouldIgnore": False} for f in files
                        ]
                    },
                )
            elif "/commit/" in path:
                self._commit(path, body)
            else:
                self._send(404, {"error": f"not served here: {path}"})

    def _commit(self, path: str, body: bytes) -> None:
        repo = path.removeprefix("/api/datasets/").split("/commit/")[0]
        lines = [json.loads(line) for line in body.splitlines() if line.strip()]
        header = next(line["value"] for line in lines if line["key"] == "header")
        stored = self.server.files.setdefault(repo, {})
        for line in lines:
            if line["key"] == "file":
                stored[line["value"]["path"]] = base64.b64decode(line["value"]["content"])
        oid = hashlib.sha1(body).hexdigest()
        self.server.commits.append({"repo": repo, "summary": header.get("summary"), "oid": oid})
        self._send(200, {"commitUrl": f"{self.server.url}/datasets/{repo}/commit/{oid}", "commitOid": oid})
