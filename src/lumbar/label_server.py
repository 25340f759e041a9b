"""The grading web page's server (``lumbar label serve``): a small JSON API and the page, standard library only.

Routes:

* ``GET /`` the page; ``GET /api/session`` the patients, their images, the grade names (Table 3),
  the grades so far and the progress;
* ``PUT /api/grades/<patient>/<disc>`` with ``{"disc_state": 2, ...}`` changes grades and saves the
  file atomically; ``POST /api/normal/<patient>`` grades every disc of a patient normal; both answer
  ``400 {"error": "..."}`` on a bad value, shown on the page;
* ``GET /images/<path>`` a file under the dataset folder, and nothing else (no path traversal).

It binds to 127.0.0.1 unless told otherwise. With ``LUMBAR_LABEL_PASSWORD`` set, every request needs
HTTP basic authentication with that password (any user name).
"""

from __future__ import annotations

import base64
import hmac
import json
import mimetypes
import os
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from lumbar.errors import LumbarError
from lumbar.grading import GradingSession
from lumbar.labels import FIELD_TITLES, GRADE_FIELDS, GRADE_NAMES
from lumbar.selection import DISC_LEVELS, DISCS

PASSWORD_ENV = "LUMBAR_LABEL_PASSWORD"
_MAX_BODY = 64 * 1024


def session_payload(session: GradingSession) -> dict[str, Any]:
    """Everything the page needs to start: patients and images, grade names, grades, progress."""
    return {
        "dataset": session.dataset.name,
        "labels": session.labels.name,
        "discs": [{"code": d, "level": DISC_LEVELS[d]} for d in DISCS],
        "fields": [{"name": f, "title": FIELD_TITLES[f], "grades": list(GRADE_NAMES[f])} for f in GRADE_FIELDS],
        "patients": [
            {
                "id": p.pseudonym,
                "sagittal": [f"/images/{path}" for path in p.sagittal],
                "myelography": [f"/images/{path}" for path in p.myelography],
                "axial": {d: f"/images/{path}" for d, path in p.axial.items()},
                "grades": session.patient_grades(p.pseudonym),
            }
            for p in session.patients
        ],
        "progress": session.progress(),
    }


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.verbose:
            super().log_message(format, *args)

    # --- plumbing ---

    def _send(self, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, payload: Any) -> None:
        self._send(status, json.dumps(payload).encode("utf-8"), "application/json")

    def _error(self, status: int, message: str) -> None:
        self._json(status, {"error": message})

    def _authorised(self) -> bool:
        password = self.server.password
        if not password:
            return True
        header = self.headers.get("Authorization", "")
        if header.startswith("Basic "):
            try:
                _, _, given = base64.b64decode(header[6:]).decode("utf-8").partition(":")
            except (ValueError, UnicodeDecodeError):
                given = ""
            if hmac.compare_digest(given.encode("utf-8"), password.encode("utf-8")):
                return True
        self._send(
            HTTPStatus.UNAUTHORIZED,
            b'{"error": "authentication required"}',
            "application/json",
            {"WWW-Authenticate": 'Basic realm="lumbar grading", charset="UTF-8"'},
        )
        return False

    def _body(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        if length > _MAX_BODY:
            raise LumbarError("request body too large")
        raw = self.rfile.read(length) if length else b"{}"
        try:
            return json.loads(raw or b"{}")
        except json.JSONDecodeError:
            raise LumbarError("the request body is not JSON") from None

    # --- routes ---

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        if not self._authorised():
            return
        path = unquote(urlsplit(self.path).path)
        if path in ("/", "/index.html"):
            self._send(HTTPStatus.OK, self.server.page, "text/html; charset=utf-8")
        elif path == "/api/session":
            self._json(HTTPStatus.OK, session_payload(self.server.session))
        elif path.startswith("/images/"):
            self._image(path.removeprefix("/images/"))
        else:
            self._error(HTTPStatus.NOT_FOUND, f"no such page: {path}")

    def _image(self, relative: str) -> None:
        root = self.server.session.dataset
        target = (root / relative).resolve()
        if not target.is_relative_to(root) or relative.startswith("/"):
            self._error(HTTPStatus.FORBIDDEN, "only files inside the dataset folder are served")
            return
        if not target.is_file():
            self._error(HTTPStatus.NOT_FOUND, f"no such image: {relative}")
            return
        kind = mimetypes.guess_type(target.name)[0] or "application/octet-stream"
        self._send(HTTPStatus.OK, target.read_bytes(), kind)

    def do_PUT(self) -> None:
        if not self._authorised():
            return
        parts = unquote(urlsplit(self.path).path).strip("/").split("/")
        if len(parts) != 4 or parts[:2] != ["api", "grades"]:
            self._error(HTTPStatus.NOT_FOUND, "expected PUT /api/grades/<patient>/<disc>")
            return
        try:
            body = self._body()
            if not isinstance(body, dict):
                raise LumbarError("the request body must be a JSON object of grades")
            grades = self.server.session.set_grades(parts[2], parts[3], body)
        except LumbarError as exc:
            self._error(HTTPStatus.BAD_REQUEST, str(exc))
            return
        self._json(HTTPStatus.OK, {"grades": grades.as_dict(), "progress": self.server.session.progress()})

    def do_POST(self) -> None:
        if not self._authorised():
            return
        parts = unquote(urlsplit(self.path).path).strip("/").split("/")
        if len(parts) != 3 or parts[:2] != ["api", "normal"]:
            self._error(HTTPStatus.NOT_FOUND, "expected POST /api/normal/<patient>")
            return
        try:
            self._body()
            self.server.session.set_all_normal(parts[2])
        except LumbarError as exc:
            self._error(HTTPStatus.BAD_REQUEST, str(exc))
            return
        session = self.server.session
        self._json(HTTPStatus.OK, {"grades": session.patient_grades(parts[2]), "progress": session.progress()})


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], session: GradingSession, password: str | None, verbose: bool):
        super().__init__(address, _Handler)
        self.session = session
        self.password = password
        self.verbose = verbose
        self.page = resources.files("lumbar").joinpath("static/grading.html").read_bytes()


class GradingServer:
    """The grading server, startable in a thread (tests) or served forever (the CLI)."""

    def __init__(
        self,
        dataset: str | Path,
        labels: str | Path,
        host: str = "127.0.0.1",
        port: int = 8080,
        password: str | None = None,
        verbose: bool = False,
    ) -> None:
        """Open the grading session and bind the port (0: a free one).

        Raises:
            LumbarError: When the dataset or grading file is unusable, or the port cannot be bound.
        """
        session = GradingSession(dataset, labels)
        try:
            self._server = _Server((host, port), session, password or os.environ.get(PASSWORD_ENV), verbose)
        except OSError as exc:
            raise LumbarError(f"cannot listen on {host}:{port} ({exc.strerror or exc})") from None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The page's URL."""
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/"

    @property
    def session(self) -> GradingSession:
        """The grading session being served."""
        return self._server.session

    def start(self) -> GradingServer:
        """Serve in a background thread."""
        self._thread = threading.Thread(target=self._server.serve_forever, name="grading-server", daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve until interrupted."""
        try:
            self._server.serve_forever()
        finally:
            self._server.server_close()

    def stop(self) -> None:
        """Stop serving and close the port."""
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
