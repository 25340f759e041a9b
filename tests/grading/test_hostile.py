"""The grading server against hostile requests, on the real server on 127.0.0.1 (raw sockets where the
request is not one an HTTP client would send). Each case is bounded in count and time."""

import base64
import contextlib
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from lumbar.errors import InputError
from lumbar.label_server import AuthThrottle, GradingServer, HostPolicy, split_host

PASSWORD = "correct-horse-battery"


def _address(server) -> tuple[str, int]:
    host, port = server.url.removeprefix("http://").rstrip("/").rsplit(":", 1)
    return host, int(port)


def _raw(server, data: bytes, timeout: float = 5.0) -> bytes:
    """Send bytes as they are and read until the server closes (or resets) the connection."""
    chunks = []
    with socket.create_connection(_address(server), timeout=timeout) as sock:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(data)
        try:
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        except (ConnectionResetError, TimeoutError):
            pass
    return b"".join(chunks)


def _request(server, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None) -> bytes:
    host, port = _address(server)
    head = {"Host": f"{host}:{port}", "Connection": "close", "Content-Length": str(len(body)), **(headers or {})}
    lines = "".join(f"{k}: {v}\r\n" for k, v in head.items() if v is not None)
    return f"{method} {path} HTTP/1.1\r\n{lines}\r\n".encode("latin-1") + body


def _status(response: bytes) -> int:
    assert response.startswith(b"HTTP/1.1 "), response[:200]
    return int(response[9:12])


def _body(response: bytes) -> bytes:
    return response.partition(b"\r\n\r\n")[2]


def _grade(server, pid: str, value: int = 3) -> bytes:
    body = json.dumps({"disc_state": value}).encode()
    return _request(server, "PUT", f"/api/grades/{pid}/L12", body, {"Content-Type": "application/json"})


@pytest.mark.parametrize("length", ["-1", "abc", "1e3", "+5", "99999999999999999999999999999"])
def test_a_bad_content_length_is_400_and_what_follows_is_never_executed(server, length):
    pid = server.session.patients[0].pseudonym
    smuggled = _grade(server, pid)
    head = _request(server, "PUT", f"/api/grades/{pid}/L23", b"", {"Content-Type": "application/json"})
    head = head.replace(b"Content-Length: 0", f"Content-Length: {length}".encode()).replace(b"close", b"keep-alive")
    before = server.session.labels.read_bytes()
    started = time.monotonic()
    response = _raw(server, head + smuggled)
    assert _status(response) == 400 and response.count(b"HTTP/1.1 ") == 1
    assert server.session.labels.read_bytes() == before and not server.session.grades
    assert time.monotonic() - started < 5  # answered and closed, not waiting for an unbounded body


def test_an_over_long_body_is_refused_and_its_rest_never_parsed_as_a_request(server):
    pid = server.session.patients[0].pseudonym
    smuggled = _grade(server, pid).replace(b"close", b"keep-alive")
    body = b'{"disc_state": 1, "pad": "' + b"x" * 70_000 + b'"}' + smuggled
    request = _request(server, "PUT", f"/api/grades/{pid}/L23", body, {"Content-Type": "application/json"})
    response = _raw(server, request.replace(b"Connection: close", b"Connection: keep-alive"))
    assert response.count(b"HTTP/1.1 ") <= 1  # a reset before the answer is read is fine; a second answer is not
    if response:
        assert _status(response) == 413 and b"larger than 65536 bytes" in _body(response)
    time.sleep(0.2)
    assert not server.session.grades and server.session.labels.read_text().count("\n") == 1  # the header only


def test_a_streamed_body_is_counted_and_cut_at_the_limit(server):
    pid = server.session.patients[0].pseudonym
    request = _request(server, "PUT", f"/api/grades/{pid}/L23", b"", {"Content-Type": "application/json"})
    request = request.replace(b"Content-Length: 0\r\n", b"Transfer-Encoding: chunked\r\n")
    chunk = b"x" * 16_000
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(6)) + b"0\r\n\r\n"
    response = _raw(server, request + chunks)
    assert not response or (_status(response) == 413 and response.count(b"HTTP/1.1 ") == 1)
    assert not server.session.grades


def test_hostile_paths_and_bodies_get_a_4xx_and_no_traceback(server, caplog):
    caplog.set_level(logging.DEBUG)
    pid = server.session.patients[0].pseudonym
    json_type = {"Content-Type": "application/json"}
    cases = {
        "NUL encoded in an image path": _request(server, "GET", "/images/%00.png"),
        "NUL encoded in a patient": _request(server, "PUT", "/api/grades/a%00b/L12", b"{}", json_type),
        "NUL byte in the request line": _request(server, "GET", "/images/a\x00b"),
        "5,000-character image path": _request(server, "GET", "/images/" + "a" * 5000),
        "5,000-character patient": _request(server, "PUT", "/api/grades/" + "P" * 5000 + "/L12", b"{}", json_type),
        "20 KiB of headers": _request(server, "GET", "/", headers={"X-Pad": "y" * 20_000}),
        "non-UTF-8 byte in the path": _request(server, "GET", "/images/\xff.png"),
        "non-UTF-8 escape in the path": _request(server, "GET", "/images/%ff%fe.png"),
        "non-UTF-8 body": _request(server, "PUT", f"/api/grades/{pid}/L12", b'{"disc_state": "\xff\xfe"}', json_type),
        "deeply nested JSON": _request(server, "PUT", f"/api/grades/{pid}/L12", b"[" * 60_000, json_type),
        "deeply nested object": _request(server, "PUT", f"/api/grades/{pid}/L12", b'{"a":' * 20_000, json_type),
        "an integer of 5,000 digits": _request(
            server, "PUT", f"/api/grades/{pid}/L12", b'{"disc_state": ' + b"9" * 5000 + b"}", json_type
        ),
        "not JSON": _request(server, "PUT", f"/api/grades/{pid}/L12", b"disc_state=3", json_type),
        "a JSON list": _request(server, "PUT", f"/api/grades/{pid}/L12", b"[1, 2]", json_type),
        "NaN grade": _request(server, "PUT", f"/api/grades/{pid}/L12", b'{"disc_state": NaN}', json_type),
        "an unknown method": _request(server, "DELETE", f"/api/grades/{pid}/L12"),
        "a garbage request line": b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n",
        "two Host headers": _request(server, "GET", "/", headers={"host": "127.0.0.1"}),
    }
    for name, request in cases.items():
        response = _raw(server, request)
        assert response, name
        assert 400 <= _status(response) < 500, (name, response[:300])
    assert not server.session.grades
    tracebacks = [r for r in caplog.records if r.exc_info or "Traceback" in r.getMessage()]
    assert not tracebacks, [r.getMessage() for r in tracebacks]
    assert all(r.levelno < logging.ERROR for r in caplog.records), [r.getMessage() for r in caplog.records]


def test_cross_site_writes_are_refused(server):
    pid = server.session.patients[0].pseudonym
    host, port = _address(server)
    path = f"/api/normal/{pid}"
    refused = {
        "text/plain (a cross-site form or simple fetch)": ({"Content-Type": "text/plain"}, 415),
        "a form": ({"Content-Type": "application/x-www-form-urlencoded"}, 415),
        "no content type": ({"Content-Type": None}, 415),
        "JSON from another site": ({"Content-Type": "application/json", "Origin": "http://evil.example"}, 403),
        "JSON from another port": ({"Content-Type": "application/json", "Origin": f"http://{host}:{port + 1}"}, 403),
        "JSON from a sandboxed frame": ({"Content-Type": "application/json", "Origin": "null"}, 403),
    }
    for name, (headers, expected) in refused.items():
        response = _raw(server, _request(server, "POST", path, b"{}", headers))
        assert _status(response) == expected, name
    preflight = _raw(server, _request(server, "OPTIONS", path, headers={"Origin": "http://evil.example"}))
    assert _status(preflight) >= 400 and b"access-control-allow" not in preflight.lower()
    assert not server.session.grades
    own = {"Content-Type": "application/json; charset=utf-8", "Origin": f"http://{host}:{port}"}
    assert _status(_raw(server, _request(server, "POST", path, b"{}", own))) == 200
    assert len(server.session.grades) == 5


def test_the_host_header_must_name_the_server(server, built_dataset, tmp_path):
    host, port = _address(server)
    for name in ("evil.example", f"evil.example:{port}", f"{host}:{port + 1}", "", f"{host}:{port}x"):
        response = _raw(server, _request(server, "GET", "/api/session", headers={"Host": name}))
        assert _status(response) == 400 and b"patients" not in response, name
    for name in (f"localhost:{port}", f"LOCALHOST:{port}", f"127.0.0.1:{port}", f"[::1]:{port}"):
        assert _status(_raw(server, _request(server, "GET", "/api/session", headers={"Host": name}))) == 200, name
    http10 = b"GET /api/session HTTP/1.0\r\n\r\n"  # no Host at all
    assert _status(_raw(server, http10)) == 400

    proxied = GradingServer(built_dataset, tmp_path / "p.csv", port=0, allowed_hosts=["grading.example.org"]).start()
    try:
        pid = proxied.session.patients[0].pseudonym
        behind = {"Host": "grading.example.org", "Origin": "https://grading.example.org"}
        response = _raw(proxied, _request(proxied, "POST", f"/api/normal/{pid}", b"{}",
                                          {**behind, "Content-Type": "application/json"}))  # fmt: skip
        assert _status(response) == 200
        other = {"Host": "grading.example.org", "Origin": "https://evil.example"}
        assert _status(_raw(proxied, _request(proxied, "GET", "/", headers=other))) == 403
    finally:
        proxied.stop()
    with pytest.raises(InputError, match="allowed host 'bad host/x' is not a host name"):
        GradingServer(built_dataset, tmp_path / "q.csv", port=0, allowed_hosts=["bad host/x"])


def test_host_names_are_parsed_strictly():
    assert split_host("Example.org:8080") == ("example.org", 8080)
    assert split_host("[::1]:80") == ("::1", 80) and split_host("[::1]") == ("::1", None)
    assert split_host("a:b") is None and split_host("[::1") is None and split_host(":80") is None
    policy = HostPolicy.for_bind("127.0.0.1", 80, ["proxy.example"])
    assert policy.allows("localhost") and policy.allows("127.0.0.1:80") and not policy.allows("127.0.0.1:81")
    assert policy.allows("proxy.example:443") and not policy.allows("example")


def test_wrong_passwords_are_slowed_down(built_dataset, tmp_path, monkeypatch):
    monkeypatch.setenv("LUMBAR_LABEL_PASSWORD", PASSWORD)
    running = GradingServer(built_dataset, tmp_path / "g.csv", port=0).start()

    def attempt(password: str) -> bytes:
        token = base64.b64encode(f"grader:{password}".encode()).decode()
        return _raw(running, _request(running, "GET", "/api/session", headers={"Authorization": f"Basic {token}"}))

    try:
        assert _status(_raw(running, _request(running, "GET", "/"))) == 401  # no password: asked, not counted
        started = time.monotonic()
        statuses = [_status(attempt(f"guess-{i}")) for i in range(50)]
        assert statuses[:5] == [401] * 5 and set(statuses[5:]) == {429}, statuses
        locked = attempt(PASSWORD)
        assert _status(locked) == 429 and b"retry-after: 1" in locked.lower()  # even the right one must wait
        assert time.monotonic() - started < 5
        time.sleep(1.05)
        assert _status(attempt(PASSWORD)) == 200  # after the wait the right password works, and resets the count
        assert [_status(attempt("again")) for _ in range(6)] == [401] * 5 + [429]
    finally:
        running.stop()


def test_the_wait_doubles_with_every_further_failure():
    now = [0.0]
    throttle = AuthThrottle(free=2, first_wait=1.0, max_wait=8.0, clock=lambda: now[0])
    waits = []
    for _ in range(7):
        throttle.failed("10.0.0.1")
        waits.append(throttle.wait("10.0.0.1"))
    assert waits == [0.0, 1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    assert throttle.wait("10.0.0.2") == 0.0  # per client
    now[0] = 7.5
    assert throttle.wait("10.0.0.1") == pytest.approx(0.5)
    throttle.succeeded("10.0.0.1")
    assert throttle.wait("10.0.0.1") == 0.0
    flood = AuthThrottle(free=1, max_clients=100, clock=lambda: now[0])
    for i in range(1000):  # a guesser with many addresses cannot grow the table without bound
        now[0] += 0.001
        flood.failed(f"10.1.{i // 256}.{i % 256}")
    assert len(flood._failures) <= 100 and flood.wait("10.1.3.231") > 0  # the latest are remembered


def test_only_the_selected_images_are_served_and_no_absolute_path_is_shown(server, built_dataset, tmp_path):
    session = json.loads(_body(_raw(server, _request(server, "GET", "/api/session"))))
    served = {src for p in session["patients"] for src in (*p["sagittal"], *p["myelography"], *p["axial"].values())}
    assert served and all(_status(_raw(server, _request(server, "GET", src))) == 200 for src in sorted(served)[:12])
    others = [f"/images/{p.relative_to(built_dataset).as_posix()}" for p in built_dataset.rglob("*") if p.is_file()]
    others = [o for o in others if o not in served]
    assert any(o.endswith(("report.json", "manifest.csv")) for o in others)
    responses = [_raw(server, _request(server, "GET", o)) for o in others[:40]]
    assert all(_status(r) == 404 for r in responses)
    pid = server.session.patients[0].pseudonym
    json_type = {"Content-Type": "application/json"}
    responses += [
        _raw(server, _request(server, "PUT", "/api/grades/P-nobody/L12", b'{"disc_state": 1}', json_type)),
        _raw(server, _request(server, "PUT", f"/api/grades/{pid}/L99", b'{"disc_state": 1}', json_type)),
        _raw(server, _request(server, "GET", "/images/../../../etc/passwd")),
        _raw(server, _request(server, "GET", "/nowhere")),
        _raw(server, _request(server, "GET", "/api/session")),
        _raw(server, _request(server, "GET", "/")),
    ]
    for response in responses:
        for path in {str(built_dataset), str(built_dataset.parent), str(tmp_path), str(Path.home())}:
            assert path.encode() not in response
    page = responses[-1].lower()
    assert b"content-security-policy: default-src 'none'; script-src 'sha256-" in page
    assert b"x-content-type-options: nosniff" in page and b"x-frame-options: deny" in page


def test_fifty_concurrent_requests_are_all_answered(server):
    barrier = threading.Barrier(50)
    statuses: list[int] = []

    def one() -> None:
        barrier.wait(timeout=10)  # all connect at once
        with socket.create_connection(_address(server), timeout=10) as sock:
            sock.sendall(_request(server, "GET", "/api/session"))
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        statuses.append(_status(b"".join(chunks)))

    threads = [threading.Thread(target=one) for _ in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=20)
    assert statuses == [200] * 50


def test_a_non_loopback_bind_needs_a_password(built_dataset, tmp_path, monkeypatch):
    monkeypatch.delenv("LUMBAR_LABEL_PASSWORD", raising=False)
    with pytest.raises(InputError, match=r"refusing to serve 0\.0\.0\.0 without a password"):
        GradingServer(built_dataset, tmp_path / "g.csv", host="0.0.0.0", port=0)
    assert not (tmp_path / "g.csv").exists()  # refused before anything was written
    GradingServer(built_dataset, tmp_path / "g.csv", host="0.0.0.0", port=0, password=PASSWORD).start().stop()
    lumbar = str(Path(sys.executable).with_name("lumbar"))
    args = [lumbar, "label", "serve", "--dataset", str(built_dataset), "--labels", str(tmp_path / "c.csv"),
            "--host", "0.0.0.0", "--port", "0"]  # fmt: skip
    proc = subprocess.run(args, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    assert proc.stderr.startswith("error: refusing to serve 0.0.0.0 without a password")
    loud = subprocess.Popen([*args, "--insecure"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        port = int(loud.stdout.readline().rstrip().rstrip("/").rsplit(":", 1)[1])
        warning = loud.stderr.readline()
        assert warning.startswith("WARNING: --insecure: 0.0.0.0 is served WITHOUT A PASSWORD")
        deadline = time.monotonic() + 20
        while True:  # it does serve, without a password
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
                sock.sendall(
                    f"GET /api/session HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n".encode()
                )
                if sock.recv(12) == b"HTTP/1.1 200":
                    break
            assert time.monotonic() < deadline
            time.sleep(0.1)
        loud.send_signal(signal.SIGINT)  # Ctrl-C: a clean stop
        out, _ = loud.communicate(timeout=20)
        assert loud.returncode == 0 and out.splitlines()[-1] == "stopped"
    finally:
        if loud.poll() is None:
            loud.kill()
            loud.wait(timeout=20)


def test_a_stalled_body_is_refused_in_time():
    """The guard itself (ASGI, in-process): a body that stops arriving gets 408 and the connection closed."""
    import asyncio

    from lumbar.label_server import RequestGuard

    reached = []

    async def app(scope, receive, send):
        reached.append(scope["path"])

    guard = RequestGuard(app, HostPolicy.for_bind("127.0.0.1", 8080), body_timeout=0.2)
    scope = {"type": "http", "method": "PUT", "path": "/api/grades/P/L12", "raw_path": b"/api/grades/P/L12",
             "query_string": b"", "client": ("127.0.0.1", 5000),
             "headers": [(b"host", b"127.0.0.1:8080"), (b"content-type", b"application/json"),
                         (b"content-length", b"20")]}  # fmt: skip
    sent = []

    async def stalled():
        await asyncio.sleep(30)

    async def send(message):
        sent.append(message)

    started = time.monotonic()
    asyncio.run(guard(scope, stalled, send))
    assert time.monotonic() - started < 2 and not reached
    assert sent[0]["status"] == 408 and (b"connection", b"close") in sent[0]["headers"]


def _from(server, source: str, data: bytes, timeout: float = 30.0) -> bytes:
    """Send bytes from a chosen loopback address (127.x.y.z) and read the whole answer."""
    chunks = []
    with socket.create_connection(_address(server), timeout=timeout, source_address=(source, 0)) as sock:
        sock.sendall(data)
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def test_wrong_passwords_from_rotating_addresses_are_slowed_for_all_but_signed_in_graders(built_dataset, tmp_path):
    """Issue 29 case 10: 200 guesses from rotating 127.x.y.z addresses used to take 0.06 s; now checks take turns."""
    spacing = 0.05
    throttle = AuthThrottle(global_free=5, global_window=60.0, global_spacing=spacing)
    running = GradingServer(built_dataset, tmp_path / "g.csv", port=0, password=PASSWORD, throttle=throttle).start()

    def attempt(source, password):
        token = base64.b64encode(f"grader:{password}".encode()).decode()
        request = _request(running, "GET", "/api/session", headers={"Authorization": f"Basic {token}"})
        return _status(_from(running, source, request))

    try:
        assert attempt("127.0.0.1", PASSWORD) == 200  # a grader signs in before the attack
        started = time.monotonic()
        statuses = [attempt(f"127.0.{1 + i // 200}.{1 + i % 200}", f"guess-{i}") for i in range(45)]
        took = time.monotonic() - started
        assert set(statuses) == {401}  # every guess got an answer: nobody is locked out ...
        assert took >= (45 - 5 - 1) * spacing, took  # ... but after 5 failures they come one turn apart
        started = time.monotonic()
        assert attempt("127.0.0.1", PASSWORD) == 200  # the signed-in grader is not slowed down
        assert time.monotonic() - started < spacing
        assert attempt("127.0.9.9", PASSWORD) == 200  # a new grader with the right password waits a turn, then gets in
    finally:
        running.stop()


def test_a_stale_server_never_overwrites_grades_another_saved(built_dataset, tmp_path):
    """Issue 29 case 9: two servers on one grades.csv, and a hand edit while a server runs."""
    from lumbar.grading import GradesConflictError, GradingSession
    from lumbar.labels import Grades, load_labels

    labels = tmp_path / "grades.csv"
    first, second = GradingSession(built_dataset, labels), GradingSession(built_dataset, labels)
    a, b = first.patients[0].pseudonym, first.patients[1].pseudonym
    first.set_grades(a, "L12", {"disc_state": 1})  # answered with 200 on the first grader's page
    with pytest.raises(GradesConflictError, match="changed by someone else"):
        second.set_grades(b, "L23", {"disc_state": 2})  # the second server still holds the empty file
    assert load_labels(labels)[0] == {(a, "L12"): Grades(1, 0, 0, 0, 0)}  # nothing lost, nothing written
    assert second.grades == first.grades  # the second session now shows the file as it is
    second.set_grades(b, "L23", {"disc_state": 2})  # the change made again is saved beside the first
    assert set(load_labels(labels)[0]) == {(a, "L12"), (b, "L23")}
    # a hand edit while the HTTP server runs: the next PUT is 409, the session shows the edit, the retry saves
    running = GradingServer(built_dataset, labels, port=0).start()
    try:
        with labels.open("a", encoding="utf-8") as handle:
            handle.write(f"{b},L45,3,0,0,0,0\n")
        put = _grade(running, a).replace(b"/L12", b"/L34")
        response = _raw(running, put)
        assert _status(response) == 409 and b"changed by someone else" in _body(response)
        session = json.loads(_body(_raw(running, _request(running, "GET", "/api/session"))))
        (patient,) = [p for p in session["patients"] if p["id"] == b]
        assert patient["grades"]["L45"]["disc_state"] == 3
        assert _status(_raw(running, put)) == 200
        assert set(load_labels(labels)[0]) == {(a, "L12"), (b, "L23"), (b, "L45"), (a, "L34")}
    finally:
        running.stop()


def test_label_merge_prints_ids_literally_and_escapes_formulas(tmp_path):
    """Issue 29 case 18: a patient id "[/bold]" crashed the console; formulas passed into the CSVs."""
    from tests.conftest import run_in_process

    header = "patient_id,disc,disc_state,herniation,scs,rfs,lfs\n"
    (tmp_path / "a.csv").write_text(header + '[/bold],L12,1,0,0,0,0\n\'=HYPERLINK("http://x"),L23,0,0,0,0,0\n')
    (tmp_path / "b.csv").write_text(header + '[/bold],L12,2,0,0,0,0\n\'=HYPERLINK("http://x"),L23,0,0,0,0,0\n')
    merged, listed = tmp_path / "m.csv", tmp_path / "d.csv"
    run = run_in_process("label", "merge", tmp_path / "a.csv", tmp_path / "b.csv", "--out", merged,
                         "--disagreements", listed)  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert "[/bold]" in run.stdout and "1 disagreement(s)" in run.stdout
    assert "'=HYPERLINK" in merged.read_text() and "\n=" not in merged.read_text()
    assert listed.read_text().splitlines()[1].startswith("[/bold],L12,disc_state")


def test_a_named_pipe_as_grading_file_is_refused_by_serve_and_merge(built_dataset, tmp_path):
    """Issue 29 case 20: `label serve` and `label merge` hung on a FIFO; both answer one line at once."""
    from tests.conftest import run_in_process

    pipe = tmp_path / "grades.csv"
    os.mkfifo(pipe)
    started = time.monotonic()
    for args in (("label", "serve", "--dataset", built_dataset, "--labels", pipe, "--port", "0"),
                 ("label", "merge", pipe, pipe)):  # fmt: skip
        run = run_in_process(*args)
        assert run.returncode == 2 and "is a named pipe (FIFO), not a regular file" in run.stderr, run.stderr
    assert time.monotonic() - started < 10
