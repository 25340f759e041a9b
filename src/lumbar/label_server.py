"""The grading web page's server (``lumbar label serve``): a small JSON API and the page, on Starlette and uvicorn.

Routes:

* ``GET /`` the page; ``GET /api/session`` the patients, their images, the grade names (Table 3),
  the grades so far and the progress;
* ``PUT /api/grades/<patient>/<disc>`` with ``{"disc_state": 2, ...}`` changes grades and saves the
  file atomically; ``POST /api/normal/<patient>`` grades every disc of a patient normal; both answer
  ``400 {"error": "..."}`` on a bad value, shown on the page, and ``409`` when the file was changed by
  someone else since the session read it (nothing is saved; the page reloads the grades);
* ``GET /images/<path>`` one of the images the manifest selected for a patient, and nothing else (not
  the manifest, the report or any other file of the dataset folder).

Every request passes one guard (:class:`RequestGuard`) before it reaches a route:

* the ``Host`` header must name the bound address (a loopback bind answers to ``localhost``,
  ``127.0.0.1`` and ``[::1]`` on its port; a wildcard bind to the machine's own names and addresses),
  or a name given with ``allowed_hosts`` (a reverse proxy's name, any port), which defeats DNS rebinding;
* an ``Origin`` header, when present, must be this server's own origin; writes (``PUT``, ``POST``) must be
  ``Content-Type: application/json``: a page on another site can neither send a simple cross-site form
  nor a ``text/plain`` fetch, and the server answers no CORS preflight;
* with a password (``LUMBAR_LABEL_PASSWORD``), HTTP basic authentication (any user name); after
  :data:`FREE_FAILURES` wrong passwords a client gets ``429`` with ``Retry-After`` for a window that
  doubles with every further failure, and after :data:`GLOBAL_FREE_FAILURES` wrong passwords from all
  addresses in a minute every new client's check waits its turn (:class:`AuthThrottle`);
* a body longer than :data:`MAX_BODY` bytes is refused (declared or streamed) with ``413`` and the
  connection is closed, so the rest of it is never read as another request; a body that stalls is
  refused with ``408``.

uvicorn (its h11 protocol) parses HTTP: request heads over :data:`MAX_HEAD` bytes (431 or 400) and malformed framing
(``Content-Length: -1`` or ``abc``, a NUL byte or a non-ASCII byte in the request line) get ``400`` and a
closed connection; its listen backlog is 2048. Errors never carry absolute paths. fastapi, starlette and
uvicorn come with MLflow (mlflow-skinny declares them), so serving adds no dependency.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hashlib
import hmac
import ipaddress
import json
import math
import mimetypes
import os
import re
import socket
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from lumbar.errors import InputError, LumbarError
from lumbar.grading import GradesConflictError, GradingSession
from lumbar.labels import FIELD_TITLES, GRADE_FIELDS, GRADE_NAMES
from lumbar.selection import DISC_LEVELS, DISCS

PASSWORD_ENV = "LUMBAR_LABEL_PASSWORD"
#: The largest request body accepted (a grade change is a few dozen bytes).
MAX_BODY = 64 * 1024
#: The longest request line plus headers: uvicorn's h11 parser buffers no more of an incomplete one (400),
#: and the guard refuses a complete one over it (431).
MAX_HEAD = 16 * 1024
#: Seconds a client may take between two parts of a request body.
BODY_TIMEOUT = 10.0
#: Wrong passwords a client may send before it is made to wait.
FREE_FAILURES = 5
#: The first wait after the free failures, doubled at every further failure, up to :data:`MAX_WAIT`.
FIRST_WAIT = 1.0
MAX_WAIT = 300.0
#: Wrong passwords from all clients together, within :data:`GLOBAL_WINDOW` seconds, before checks take turns.
GLOBAL_FREE_FAILURES = 20
GLOBAL_WINDOW = 60.0
#: Seconds between two password checks while they take turns (about 3,600 guesses an hour at most).
GLOBAL_SPACING = 1.0
#: Seconds a client that gave the right password is not made to take turns.
TRUST_WINDOW = 3600.0
#: Connections served at once; the next ones get 503.
MAX_CONNECTIONS = 256
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
_HOST_NAME = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?$")
_WRITES = frozenset({"PUT", "POST", "PATCH", "DELETE"})

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


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


def served_images(session: GradingSession) -> dict[str, Path]:
    """The only files the server sends: each patient's selected images, by their path in the manifest.

    A manifest entry that is not an image, or that points outside the dataset folder, is left out.
    """
    root = session.dataset
    images = {}
    for patient in session.patients:
        for relative in (*patient.sagittal, *patient.myelography, *patient.axial.values()):
            target = (root / relative).resolve()
            if target.suffix.lower() in IMAGE_SUFFIXES and target.is_relative_to(root) and not relative.startswith("/"):
                images[relative] = target
    return images


def is_loopback(host: str) -> bool:
    """Whether a bind address reaches this machine only (``localhost`` or a loopback IP literal)."""
    name = host.strip("[]").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _is_wildcard(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.strip("[]")).is_unspecified
    except ValueError:
        return host == ""


def _own_names() -> set[str]:
    """The machine's host names and the addresses of its interfaces (what a wildcard bind answers to)."""
    import psutil

    names = {socket.gethostname().lower(), socket.getfqdn().lower()}
    for addresses in psutil.net_if_addrs().values():
        for address in addresses:
            if address.family in (socket.AF_INET, socket.AF_INET6):
                names.add(address.address.split("%")[0].lower())
    return names


def split_host(value: str) -> tuple[str, int | None] | None:
    """A ``Host`` header's name (lower case, IPv6 without brackets) and port, or None when malformed."""
    value = value.strip().lower()
    if value.startswith("["):
        name, bracket, rest = value[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            return None
        port = rest[1:] if rest else None
    else:
        name, colon, port_text = value.partition(":")
        port = port_text if colon else None
    if not name or (port is not None and not (port.isascii() and port.isdigit() and len(port) <= 5)):
        return None
    return name, None if port is None else int(port)


@dataclass(frozen=True)
class HostPolicy:
    """The ``Host`` names the server answers to.

    Attributes:
        port: The bound port; names in ``names`` must come with it (or with none when it is 80).
        names: The bound address and its equivalents (lower case, IPv6 without brackets).
        proxy_names: Names a reverse proxy forwards (``--allowed-host``), accepted with any port.
    """

    port: int
    names: frozenset[str]
    proxy_names: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        if not 0 < self.port < 65536:
            raise InputError(f"port must be 1-65535, got {self.port}")
        check_host_names(self.proxy_names)

    @classmethod
    def for_bind(cls, host: str, port: int, allowed_hosts: Iterable[str] = ()) -> HostPolicy:
        """The names a server bound to ``host``:``port`` answers to, plus ``allowed_hosts``."""
        names = {host.strip("[]").lower()}
        if is_loopback(host):
            names |= LOOPBACK_NAMES
        elif _is_wildcard(host):
            names |= LOOPBACK_NAMES | _own_names()
        proxies = frozenset(h.strip().strip("[]").lower() for h in allowed_hosts)
        return cls(port=port, names=frozenset(names), proxy_names=proxies)

    def allows(self, host_header: str) -> bool:
        """Whether a request's ``Host`` header names this server."""
        parsed = split_host(host_header)
        if parsed is None:
            return False
        name, port = parsed
        if name in self.proxy_names:
            return True
        return name in self.names and (port == self.port or (port is None and self.port == 80))


def _ip_literal(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def check_host_names(names: Iterable[str]) -> None:
    """Refuse a ``--allowed-host`` value that is not a host name or IP address.

    Raises:
        InputError: Naming the first bad value.
    """
    for name in names:
        if not (_HOST_NAME.match(name.strip("[]")) or _ip_literal(name.strip("[]"))):
            raise InputError(f"allowed host {name!r} is not a host name (give a name like grading.example.org)")


@dataclass
class AuthThrottle:
    """Wrong passwords per client and in all: free at first, then each costs a wait.

    Per client: after ``free`` consecutive failures a client is refused (without its password being
    checked) until ``first_wait * 2 ** (failures - free)`` seconds (at most ``max_wait``) have passed
    since its last failure; a right password resets the count. Clients are told apart by IP address
    (behind a reverse proxy they are all the proxy), so an attacker who rotates addresses starts fresh
    at each one; hence the global part.

    In all: once ``global_free`` wrong passwords arrived within ``global_window`` seconds, from any
    addresses, password checks take turns, one every ``global_spacing`` seconds, for every client that
    has not given the right password within ``trust_window`` seconds. Everyone new is slowed down, nobody
    is locked out, and a grader already signed in is not slowed at all. A turn further away than
    ``max_wait`` is refused with 429 instead of queued.
    """

    free: int = FREE_FAILURES
    first_wait: float = FIRST_WAIT
    max_wait: float = MAX_WAIT
    clock: Callable[[], float] = time.monotonic
    max_clients: int = 10_000
    global_free: int = GLOBAL_FREE_FAILURES
    global_window: float = GLOBAL_WINDOW
    global_spacing: float = GLOBAL_SPACING
    trust_window: float = TRUST_WINDOW
    _failures: dict[str, tuple[int, float]] = field(default_factory=dict)
    _recent: deque[float] = field(default_factory=deque)
    _trusted: dict[str, float] = field(default_factory=dict)
    _next_turn: float = 0.0

    def wait(self, client: str) -> float:
        """Seconds the client must still wait before its password is checked again (0: none)."""
        count, last = self._failures.get(client, (0, 0.0))
        if count < self.free:
            return 0.0
        window = min(self.first_wait * 2 ** (count - self.free), self.max_wait)
        return max(0.0, last + window - self.clock())

    def slowed(self) -> bool:
        """Whether ``global_free`` wrong passwords arrived within the last ``global_window`` seconds."""
        now = self.clock()
        while self._recent and now - self._recent[0] >= self.global_window:
            self._recent.popleft()
        return len(self._recent) >= self.global_free

    def turn(self, client: str) -> float | None:
        """Take the client's turn for a password check: seconds to wait first (0: at once), or None (429).

        Turns are handed out one ``global_spacing`` apart while :meth:`slowed`; a client that gave the
        right password within ``trust_window`` seconds always goes at once.
        """
        now = self.clock()
        if now - self._trusted.get(client, -math.inf) < self.trust_window or not self.slowed():
            return 0.0
        start = max(now, self._next_turn)
        if start - now > self.max_wait:
            return None
        self._next_turn = start + self.global_spacing
        return start - now

    def failed(self, client: str) -> None:
        """Count a wrong password."""
        now = self.clock()
        if len(self._failures) >= self.max_clients:  # forget clients idle longer than the longest wait ...
            self._failures = {c: v for c, v in self._failures.items() if now - v[1] < self.max_wait}
            if len(self._failures) >= self.max_clients:  # ... and, under a flood of addresses, the older half
                kept = sorted(self._failures.items(), key=lambda item: item[1][1])[len(self._failures) // 2 :]
                self._failures = dict(kept)
        count, _ = self._failures.get(client, (0, 0.0))
        self._failures[client] = (count + 1, now)
        self._recent.append(now)
        if len(self._recent) > self.global_free:
            self._recent.popleft()

    def succeeded(self, client: str) -> None:
        """Forget a client's failures; trust it for ``trust_window`` seconds."""
        now = self.clock()
        self._failures.pop(client, None)
        if len(self._trusted) >= self.max_clients:
            self._trusted = {c: t for c, t in self._trusted.items() if now - t < self.trust_window}
        self._trusted[client] = now


def page_policy(page: bytes) -> str:
    """The page's Content-Security-Policy: its own inline script and style (by hash), same-origin fetches only."""

    def hashes(tag: str) -> str:
        blocks = re.findall(rb"<" + tag.encode() + rb">(.*?)</" + tag.encode() + rb">", page, re.DOTALL)
        return " ".join(f"'sha256-{base64.b64encode(hashlib.sha256(b).digest()).decode()}'" for b in blocks)

    return (
        f"default-src 'none'; script-src {hashes('script')}; style-src {hashes('style')}; "
        "img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )


_SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"cache-control", b"no-store"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-resource-policy", b"same-origin"),
]


async def _answer(send: Send, status: int, message: str, headers: Iterable[tuple[bytes, bytes]] = ()) -> None:
    """Send ``{"error": message}`` with a status (the guard's own refusals)."""
    body = json.dumps({"error": message}).encode("utf-8")
    start_headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *headers]
    await send({"type": "http.response.start", "status": status, "headers": start_headers})
    await send({"type": "http.response.body", "body": body})


class RequestGuard:
    """ASGI middleware that checks Host, Origin, authentication, content type and body size before the app."""

    def __init__(
        self,
        app: ASGIApp,
        hosts: HostPolicy,
        password: str | None = None,
        throttle: AuthThrottle | None = None,
        max_body: int = MAX_BODY,
        body_timeout: float = BODY_TIMEOUT,
    ) -> None:
        self.app = app
        self.hosts = hosts
        self.password = password.encode("utf-8") if password else None
        self.throttle = throttle or AuthThrottle()
        self.max_body = max_body
        self.body_timeout = body_timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer a refusal, or pass the request (its body read and checked) to the app."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_secured(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                headers += [(k, v) for k, v in _SECURITY_HEADERS if k not in present]
                if b"content-security-policy" not in present:
                    headers.append((b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'"))
                message = {**message, "headers": headers}
            await send(message)

        headers: dict[str, list[str]] = {}
        for name, value in scope["headers"]:
            headers.setdefault(name.decode("latin-1").lower(), []).append(value.decode("latin-1"))
        refusal = self._check(scope, headers)
        if refusal is None and self.password is not None:
            refusal = await self._authenticate(scope, headers.get("authorization", [None])[0])
        if refusal is None:
            refusal = self._check_write(scope, headers)
        if refusal is not None:  # the connection is closed: a body the request may carry is never read
            status, message, extra = refusal
            await _answer(send_secured, status, message, [*extra, (b"connection", b"close")])
            return
        body = await self._read_body(headers, receive, send_secured)
        if body is None:
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send_secured)

    def _check(self, scope: Scope, headers: dict[str, list[str]]) -> tuple[int, str, list] | None:
        """The refusal when the head, Host or Origin fails a check, as (status, message, headers), or None."""
        head = len(scope.get("raw_path", b"")) + len(scope.get("query_string", b""))
        if head + sum(len(k) + len(v) + 4 for k, vs in headers.items() for v in vs) > MAX_HEAD:
            return 431, f"the request line and headers are longer than {MAX_HEAD} bytes", []
        for name in ("host", "origin", "authorization", "content-type", "content-length"):
            if len(headers.get(name, ())) > 1:
                return 400, f"more than one {name} header", []
        host = headers.get("host", [""])[0]
        if not self.hosts.allows(host):
            return 400, "this server does not answer to that host name (behind a proxy: --allowed-host)", []
        origin = headers.get("origin", [None])[0]
        if origin is not None and origin.lower() not in (f"http://{host}".lower(), f"https://{host}".lower()):
            return 403, "requests from another site are refused", []
        return None

    @staticmethod
    def _check_write(scope: Scope, headers: dict[str, list[str]]) -> tuple[int, str, list] | None:
        """The refusal of a write that is not JSON (checked after authentication), or None."""
        if scope["method"] in _WRITES:
            media_type = headers.get("content-type", [""])[0].split(";")[0].strip().lower()
            if media_type != "application/json":
                return 415, "changes must be sent as application/json", []
        return None

    async def _authenticate(self, scope: Scope, header: str | None) -> tuple[int, str, list] | None:
        client = (scope.get("client") or ("unknown", 0))[0]
        wait = self.throttle.wait(client)
        if wait > 0:
            retry = str(math.ceil(wait)).encode()
            return 429, f"too many wrong passwords; try again in {math.ceil(wait)} s", [(b"retry-after", retry)]
        turn = self.throttle.turn(client)
        if turn is None:
            retry = str(math.ceil(self.throttle.max_wait)).encode()
            message = "too many wrong passwords from many addresses; password checks are queued, try again later"
            return 429, message, [(b"retry-after", retry)]
        if turn > 0:
            await asyncio.sleep(turn)
        challenge = [(b"www-authenticate", b'Basic realm="lumbar grading", charset="UTF-8"')]
        if header is None:
            return 401, "authentication required", challenge
        given = b""
        scheme, _, token = header.partition(" ")
        if scheme.lower() == "basic":
            try:
                _, _, given = base64.b64decode(token.strip(), validate=True).partition(b":")
            except (binascii.Error, ValueError):
                given = b""
        if self.password is not None and hmac.compare_digest(given, self.password):
            self.throttle.succeeded(client)
            return None
        self.throttle.failed(client)
        return 401, "wrong password", challenge

    async def _read_body(self, headers: dict[str, list[str]], receive: Receive, send: Send) -> bytes | None:
        """The whole body, or None after answering 413/408 (and closing) or when the client went away."""
        close = [(b"connection", b"close")]
        too_large = f"the request body is larger than {self.max_body} bytes"
        declared = headers.get("content-length", [None])[0]
        if declared is not None and int(declared) > self.max_body:  # h11 let only digits through
            await _answer(send, 413, too_large, close)
            return None
        chunks, size = [], 0
        while True:
            try:
                message = await asyncio.wait_for(receive(), timeout=self.body_timeout)
            except TimeoutError:
                await _answer(send, 408, "the request body did not arrive in time", close)
                return None
            if message["type"] != "http.request":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                await _answer(send, 413, too_large, close)
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)


def _json_body(raw: bytes, required: bool) -> dict[str, Any]:
    """The request body as a JSON object (an empty body is ``{}`` unless required).

    Raises:
        InputError: When the body is not UTF-8, not JSON, too deeply nested, or not an object.
    """
    if not raw.strip():
        if required:
            raise InputError("the request body must be a JSON object of grades")
        return {}
    try:
        value = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise InputError("the request body is not UTF-8 text") from None
    except RecursionError:
        raise InputError("the request body is nested too deeply") from None
    except ValueError:
        raise InputError("the request body is not JSON") from None
    if not isinstance(value, dict):
        raise InputError("the request body must be a JSON object of grades")
    return value


def build_app(session: GradingSession, page: bytes) -> ASGIApp:
    """The Starlette application: the page, the session, the images and the two writes."""
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.exceptions import HTTPException
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    images = served_images(session)
    policy = page_policy(page)

    async def index(request: Request) -> Response:
        return Response(page, media_type="text/html; charset=utf-8", headers={"Content-Security-Policy": policy})

    async def api_session(request: Request) -> Response:
        with contextlib.suppress(LumbarError):  # a file broken by an edit is reported by the next save
            await run_in_threadpool(session.refresh)
        return JSONResponse(session_payload(session))

    def image(request: Request) -> Response:
        target = images.get(request.path_params["path"])
        if target is None:
            raise HTTPException(404, "no such image")
        try:
            data = target.read_bytes()
        except OSError:
            raise HTTPException(404, "no such image") from None
        return Response(data, media_type=mimetypes.guess_type(target.name)[0] or "application/octet-stream")

    async def save(change: Callable[..., Any], *args: Any) -> Any:
        try:
            return await run_in_threadpool(change, *args)
        except GradesConflictError as exc:
            raise HTTPException(409, str(exc)) from None
        except LumbarError as exc:
            raise HTTPException(400, str(exc)) from None
        except OSError as exc:
            raise HTTPException(500, f"the grading file could not be saved ({exc.strerror or 'I/O error'})") from None

    async def put_grades(request: Request) -> Response:
        patient, disc = request.path_params["patient"], request.path_params["disc"]
        try:
            values = _json_body(await request.body(), required=True)
        except InputError as exc:
            raise HTTPException(400, str(exc)) from None
        grades = await save(session.set_grades, patient, disc, values)
        return JSONResponse({"grades": grades.as_dict(), "progress": session.progress()})

    async def post_normal(request: Request) -> Response:
        patient = request.path_params["patient"]
        try:
            _json_body(await request.body(), required=False)
        except InputError as exc:
            raise HTTPException(400, str(exc)) from None
        await save(session.set_all_normal, patient)
        return JSONResponse({"grades": session.patient_grades(patient), "progress": session.progress()})

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return JSONResponse({"error": exc.detail}, exc.status_code, headers=exc.headers)

    routes = [
        Route("/", index, methods=["GET"]),
        Route("/index.html", index, methods=["GET"]),
        Route("/api/session", api_session, methods=["GET"]),
        Route("/images/{path:path}", image, methods=["GET"]),
        Route("/api/grades/{patient}/{disc}", put_grades, methods=["PUT"]),
        Route("/api/normal/{patient}", post_normal, methods=["POST"]),
    ]
    return Starlette(routes=routes, exception_handlers={HTTPException: http_error})


def _listen(host: str, port: int) -> socket.socket:
    """A listening TCP socket on host:port (0: a free port), with uvicorn's backlog."""
    family, kind, proto, _, address = socket.getaddrinfo(
        host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(2048)
    except OSError:
        sock.close()
        raise
    return sock


class GradingServer:
    """The grading server, startable in a thread (tests) or served until interrupted (the CLI)."""

    def __init__(
        self,
        dataset: str | Path,
        labels: str | Path,
        host: str = "127.0.0.1",
        port: int = 8080,
        password: str | None = None,
        verbose: bool = False,
        allowed_hosts: Iterable[str] = (),
        insecure: bool = False,
        throttle: AuthThrottle | None = None,
    ) -> None:
        """Open the grading session and bind the port (0: a free one).

        Args:
            dataset: A Dataset C folder, or a published version URI.
            labels: The grading CSV (created when missing).
            host: The address to bind.
            port: The port (0: a free one).
            password: The password (default: ``LUMBAR_LABEL_PASSWORD``; none: no authentication).
            verbose: Log every request (uvicorn's access log).
            allowed_hosts: Further ``Host`` names to answer to (a reverse proxy's).
            insecure: Serve a non-loopback address without a password.
            throttle: How wrong passwords are slowed down (default :class:`AuthThrottle`).

        Raises:
            InputError: When a non-loopback address has no password (and not ``insecure``), or an allowed
                host is not a host name.
            LumbarError: When the dataset or grading file is unusable, or the port cannot be bound.
        """
        import uvicorn

        password = password or os.environ.get(PASSWORD_ENV) or None
        if not password and not is_loopback(host) and not insecure:
            raise InputError(
                f"refusing to serve {host} without a password: anyone who reaches it could read and change the "
                f"grades; set {PASSWORD_ENV}, bind to 127.0.0.1, or pass --insecure"
            )
        self.password_required = password is not None
        allowed_hosts = tuple(allowed_hosts)
        check_host_names(allowed_hosts)
        session = GradingSession(dataset, labels)
        try:
            self._socket = _listen(host, port)
        except OSError as exc:
            raise LumbarError(f"cannot listen on {host}:{port} ({exc.strerror or exc})") from None
        bound_port = self._socket.getsockname()[1]
        self._session = session
        page = resources.files("lumbar").joinpath("static/grading.html").read_bytes()
        hosts = HostPolicy.for_bind(host, bound_port, allowed_hosts)
        app = RequestGuard(build_app(session, page), hosts, password, throttle)
        config = uvicorn.Config(
            app,
            http="h11",
            ws="none",
            lifespan="off",
            interface="asgi3",
            log_config=None,
            access_log=verbose,
            proxy_headers=False,  # X-Forwarded-For would let a client choose its own address (and dodge the throttle)
            server_header=False,
            h11_max_incomplete_event_size=MAX_HEAD,
            limit_concurrency=MAX_CONNECTIONS,
            backlog=2048,
            timeout_keep_alive=5,
            timeout_graceful_shutdown=5,
        )
        self._server = uvicorn.Server(config)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The page's URL."""
        host, port = self._socket.getsockname()[:2]
        return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"

    @property
    def session(self) -> GradingSession:
        """The grading session being served."""
        return self._session

    def start(self, timeout: float = 10.0) -> GradingServer:
        """Serve in a background thread; returns once the server accepts requests.

        Raises:
            LumbarError: When the server did not start within ``timeout`` seconds.
        """
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._socket]}, name="grading-server", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise LumbarError("the grading server did not start")
            time.sleep(0.02)
        return self

    def serve_forever(self) -> None:
        """Serve until interrupted: on Ctrl-C (or SIGTERM) open requests finish, then the signal is raised again."""
        try:
            self._server.run(sockets=[self._socket])
        finally:
            self._socket.close()

    def stop(self) -> None:
        """Stop serving and close the port."""
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._socket.close()
