"""The grading tool: saving, validation, atomic writes, path traversal, authentication, merging, the builder
reading its file, and two patients graded in a real browser."""

import base64
import csv
import http.client
import json
import shutil
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from lumbar.dataset_c import BuildConfig, build_dataset_c, read_manifest
from lumbar.grading import GradingSession, cohen_kappa, dataset_patients, merge_gradings
from lumbar.label_server import GradingServer
from lumbar.labels import COLUMNS, Grades, load_labels, write_labels
from tests.conftest import TEST_SECRET_ENV

ROOT = Path(__file__).resolve().parents[2]


def _rows(path: Path) -> list[list[str]]:
    with path.open(newline="") as handle:
        return list(csv.reader(handle))


def _call(server, method, path, body=None, headers=None):
    host, port = server.url.removeprefix("http://").rstrip("/").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    data = json.dumps(body).encode() if body is not None else None
    connection.request(method, path, body=data, headers={"Content-Type": "application/json", **(headers or {})})
    response = connection.getresponse()
    payload = response.read()
    connection.close()
    return response.status, payload


def test_session_lists_patients_and_their_table2_images(server, built_dataset):
    status, payload = _call(server, "GET", "/api/session")
    assert status == 200
    session = json.loads(payload)
    patients = dataset_patients(built_dataset)
    assert [p["id"] for p in session["patients"]] == [p.pseudonym for p in patients]
    for patient in session["patients"]:  # Table 2: one sagittal T2, up to two myelography frames, five axial discs
        assert len(patient["sagittal"]) == 1 and 1 <= len(patient["myelography"]) <= 2 and len(patient["axial"]) == 5
    assert any(len(p["myelography"]) == 2 for p in session["patients"])  # the seed draws short series for some
    first = session["patients"][0]
    assert session["fields"][0]["grades"] == ["normal", "degeneration", "bulge", "herniation"]
    assert session["progress"] == {"graded": 0, "total": len(patients)}
    status, image = _call(server, "GET", first["axial"]["L45"])
    assert status == 200 and image[:8] == b"\x89PNG\r\n\x1a\n"


def test_each_change_is_saved_in_the_builders_format(server):
    pid = server.session.patients[0].pseudonym
    status, payload = _call(server, "PUT", f"/api/grades/{pid}/L45", {"disc_state": 2, "scs": 1})
    assert status == 200 and json.loads(payload)["grades"]["disc_state"] == 2
    grades, problems = load_labels(server.session.labels, strict=True)
    assert grades == {(pid, "L45"): Grades(2, 0, 1, 0, 0)} and not problems
    status, payload = _call(server, "POST", f"/api/normal/{pid}", {})
    assert status == 200 and json.loads(payload)["progress"]["graded"] == 1
    rows = _rows(server.session.labels)
    assert rows[0] == list(COLUMNS) and len(rows) == 6
    assert all(r[2:] == ["0"] * 5 for r in rows[1:])  # "all normal" overrides the earlier grades


@pytest.mark.parametrize(
    ("path", "body", "message"),
    [
        ("/api/grades/{pid}/L45", {"disc_state": 7}, "disc_state of L4-L5 must be a grade 0-3, got 7"),
        ("/api/grades/{pid}/L45", {"disc_state": "2"}, "must be a grade 0-3"),
        ("/api/grades/{pid}/L45", {"colour": 1}, "unknown field 'colour'"),
        ("/api/grades/{pid}/L67", {"disc_state": 1}, "unknown disc 'L67'"),
        ("/api/grades/P-nobody/L45", {"disc_state": 1}, "patient 'P-nobody' is not in the dataset"),
    ],
)
def test_validation_errors_reach_the_page_and_change_nothing(server, path, body, message):
    pid = server.session.patients[0].pseudonym
    before = server.session.labels.read_bytes()
    status, payload = _call(server, "PUT", path.format(pid=pid), body)
    assert status == 400
    assert message in json.loads(payload)["error"]
    assert server.session.labels.read_bytes() == before


def test_writes_are_atomic(built_dataset, tmp_path, monkeypatch):
    labels = tmp_path / "grades.csv"
    session = GradingSession(built_dataset, labels)
    pid = session.patients[0].pseudonym
    session.set_grades(pid, "L12", {"disc_state": 1})
    saved = labels.read_bytes()

    def crash(path, grades):  # the process dies half-way through writing the new file
        Path(path).write_text("patient_id,disc,disc_st")
        raise OSError("disk full")

    monkeypatch.setattr("lumbar.grading.write_labels", crash)
    with pytest.raises(OSError):
        session.set_grades(pid, "L23", {"disc_state": 3})
    assert labels.read_bytes() == saved  # the old file is whole
    assert session.grades == {(pid, "L12"): Grades(1, 0, 0, 0, 0)}
    assert [p.name for p in tmp_path.iterdir()] == ["grades.csv"]  # no temporary file left behind


@pytest.mark.parametrize(
    "path",
    ["/images/../manifest.csv", "/images/%2e%2e/%2e%2e/etc/passwd", "/images//etc/passwd", "/images/..%2f..%2fetc"],
)
def test_path_traversal_is_refused(server, path):
    status, payload = _call(server, "GET", path)
    assert status in (403, 404)
    assert b"root:" not in payload and b"patient," not in payload


def test_basic_authentication_when_a_password_is_set(built_dataset, tmp_path, monkeypatch):
    monkeypatch.setenv("LUMBAR_LABEL_PASSWORD", "s3cret-pass")
    running = GradingServer(built_dataset, tmp_path / "g.csv", port=0).start()
    try:
        status, _ = _call(running, "GET", "/api/session")
        assert status == 401
        wrong = base64.b64encode(b"grader:nope").decode()
        assert _call(running, "GET", "/", headers={"Authorization": f"Basic {wrong}"})[0] == 401
        good = base64.b64encode(b"grader:s3cret-pass").decode()
        assert _call(running, "GET", "/api/session", headers={"Authorization": f"Basic {good}"})[0] == 200
    finally:
        running.stop()


def test_cohen_kappa_on_known_inputs():
    from sklearn.metrics import cohen_kappa_score

    a = [0, 0, 1, 1, 2, 2, 3, 3, 0, 1]
    b = [0, 0, 1, 2, 2, 2, 3, 1, 0, 1]
    assert cohen_kappa(a, b) == pytest.approx(cohen_kappa_score(a, b))
    assert cohen_kappa([0, 1, 2], [0, 1, 2]) == pytest.approx(1.0)
    # the textbook 2x2 example: 20 yes/yes, 5 yes/no, 10 no/yes, 15 no/no -> kappa 0.4
    first = [1] * 25 + [0] * 25
    second = [1] * 20 + [0] * 5 + [1] * 10 + [0] * 15
    assert cohen_kappa(first, second) == pytest.approx(0.4)
    assert cohen_kappa([], []) is None and cohen_kappa([0, 0], [0, 0]) is None


def test_merge_reports_disagreements_and_kappa(tmp_path):
    normal = Grades(0, 0, 0, 0, 0)
    a = {("P1", "L12"): normal, ("P1", "L23"): Grades(2, 1, 1, 0, 0), ("P2", "L12"): Grades(1, 0, 0, 0, 0)}
    b = {("P1", "L12"): normal, ("P1", "L23"): Grades(3, 1, 2, 0, 0), ("P3", "L45"): Grades(1, 0, 0, 0, 0)}
    write_labels(tmp_path / "a.csv", a)
    write_labels(tmp_path / "b.csv", b)
    result = merge_gradings(tmp_path / "a.csv", tmp_path / "b.csv")
    assert (result.both, result.only_first, result.only_second) == (2, 1, 1)
    assert [(d["patient_id"], d["disc"], d["fields"]) for d in result.disagreements] == [
        ("P1", "L23", ["disc_state", "scs"])
    ]
    assert set(result.merged) == {("P1", "L12"), ("P2", "L12"), ("P3", "L45")}  # the disagreement awaits a decision
    assert result.kappa["disc_state"] == pytest.approx(cohen_kappa([0, 2], [0, 3]))
    assert result.kappa["herniation"] == pytest.approx(1.0)  # 0/0 and 1/1: perfect agreement
    assert result.kappa["rfs"] is None  # every common disc 0 for both: chance agreement is 1, kappa undefined
    preferred = merge_gradings(tmp_path / "a.csv", tmp_path / "b.csv", prefer="second")
    assert preferred.merged[("P1", "L23")] == Grades(3, 1, 2, 0, 0)


def test_merge_cli_prints_kappa_and_writes_files(tmp_path):
    import subprocess
    import sys

    write_labels(tmp_path / "a.csv", {("P1", "L12"): Grades(0, 0, 0, 0, 0), ("P1", "L23"): Grades(2, 0, 0, 0, 0)})
    write_labels(tmp_path / "b.csv", {("P1", "L12"): Grades(0, 0, 0, 0, 0), ("P1", "L23"): Grades(1, 0, 0, 0, 0)})
    lumbar = str(Path(sys.executable).with_name("lumbar"))
    proc = subprocess.run(
        [lumbar, "label", "merge", tmp_path / "a.csv", tmp_path / "b.csv", "--out", tmp_path / "m.csv",
         "--disagreements", tmp_path / "d.csv"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "1 disagreement(s)" in proc.stdout and "Cohen's kappa" in proc.stdout
    assert len(_rows(tmp_path / "m.csv")) == 2 and len(_rows(tmp_path / "d.csv")) == 2
    bad = tmp_path / "bad.csv"
    bad.write_text("patient_id,disc,disc_state,herniation,scs,rfs,lfs\nP1,L12,9,0,0,0,0\n")
    proc = subprocess.run([lumbar, "label", "merge", bad, tmp_path / "b.csv"], capture_output=True, text=True)
    assert proc.returncode == 2 and "line 2, field 'disc_state', value '9'" in proc.stderr


def test_the_builder_reads_the_tools_file(synthetic_export, tmp_path):
    """Grades written by the page (keyed by pseudonyms) label Dataset C when it is built again."""
    first = tmp_path / "unlabelled"
    build_dataset_c(BuildConfig(source=synthetic_export, out=first, key_secret_env=TEST_SECRET_ENV, workers=2))
    session = GradingSession(first, tmp_path / "grades.csv")
    a, b = session.patients[0].pseudonym, session.patients[1].pseudonym
    session.set_all_normal(a)
    session.set_grades(b, "L45", {"disc_state": 3, "herniation": 2})
    again = tmp_path / "labelled"
    build_dataset_c(
        BuildConfig(
            source=synthetic_export, out=again, labels=session.labels, key_secret_env=TEST_SECRET_ENV, workers=2
        )
    )
    rows = {(r["patient"], r["disc"]): r for r in read_manifest(again) if r["disc"]}
    assert all(rows[(a, d)]["label"] == "0" for d in ("L12", "L23", "L34", "L45", "L51") if (a, d) in rows)
    assert rows[(b, "L45")]["disc_state"] == "3" and rows[(b, "L45")]["label"] == "1"
    assert rows[(b, "L12")]["label"] == ""  # not graded


def test_grading_two_patients_in_a_real_browser(server):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    chromium, driver_path = shutil.which("chromium"), shutil.which("chromedriver")
    if not chromium or not driver_path:
        pytest.fail("Debian's chromium and chromium-driver are missing: run `make test`, which installs them")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1400,1000"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    browser = webdriver.Chrome(service=Service(driver_path), options=options)
    wait = WebDriverWait(browser, 20)
    first, second = server.session.patients[0].pseudonym, server.session.patients[1].pseudonym

    def saved(text):
        wait.until(lambda b: text in b.find_element(By.ID, "saved").text)

    try:
        browser.get(server.url)
        wait.until(lambda b: b.find_elements(By.CSS_SELECTOR, "button[data-disc='L45'][data-field='disc_state']"))
        body = browser.find_element(By.TAG_NAME, "body")
        body.send_keys("n")  # patient 1: all discs normal ...
        saved(f"saved {first}: all discs normal")
        bulge = "button[data-disc='L45'][data-field='disc_state'][data-value='2']"
        browser.find_element(By.CSS_SELECTOR, bulge).click()
        saved(f"saved {first} L45 disc_state = 2")  # ... but L4-L5 a bulge
        body.send_keys("j")  # next patient
        wait.until(lambda b: b.find_element(By.ID, "patient").get_attribute("value") == "1")
        body.send_keys("3", "v")  # L3-L4, disc state 3 (herniation) by keys
        saved(f"saved {second} L34 disc_state = 3")
        browser.find_element(By.CSS_SELECTOR, "button[data-disc='L34'][data-field='scs'][data-value='1']").click()
        saved(f"saved {second} L34 scs = 1")
        assert "graded 1 / " in browser.find_element(By.ID, "progress").text
        browser.refresh()  # a reload shows what was saved: both patients' grades and the progress
        wait.until(lambda b: "on" in b.find_element(By.CSS_SELECTOR, bulge).get_attribute("class"))
        assert "graded 1 / " in browser.find_element(By.ID, "progress").text
        browser.find_element(By.TAG_NAME, "body").send_keys("j")
        mild = "button[data-disc='L34'][data-field='scs'][data-value='1']"
        wait.until(lambda b: "on" in b.find_element(By.CSS_SELECTOR, mild).get_attribute("class"))
        # a second grader's server saves into the same file: this page's next change is refused (409), and
        # the page shows the other grader's grade instead of overwriting it; the change made again is saved
        GradingSession(server.session.dataset, server.session.labels).set_grades(second, "L12", {"disc_state": 1})
        other = "button[data-disc='L12'][data-field='disc_state'][data-value='1']"
        browser.find_element(
            By.CSS_SELECTOR, "button[data-disc='L23'][data-field='disc_state'][data-value='2']"
        ).click()
        wait.until(lambda b: "changed by someone else" in b.find_element(By.ID, "error").text)
        wait.until(lambda b: "on" in b.find_element(By.CSS_SELECTOR, other).get_attribute("class"))
        browser.find_element(
            By.CSS_SELECTOR, "button[data-disc='L23'][data-field='disc_state'][data-value='2']"
        ).click()
        saved(f"saved {second} L23 disc_state = 2")
        (ROOT / "test-artifacts").mkdir(exist_ok=True)
        browser.save_screenshot(str(ROOT / "test-artifacts" / "grading.png"))
        errors = [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
        errors = [e for e in errors if "409 (Conflict)" not in e["message"]]  # the conflict above, on purpose
        assert not errors, errors
    finally:
        browser.quit()
    deadline = time.monotonic() + 5
    expected = {(first, d): Grades(0, 0, 0, 0, 0) for d in ("L12", "L23", "L34", "L51")}
    expected[(first, "L45")] = Grades(2, 0, 0, 0, 0)
    expected[(second, "L34")] = Grades(3, 0, 1, 0, 0)
    expected[(second, "L12")] = Grades(1, 0, 0, 0, 0)
    expected[(second, "L23")] = Grades(2, 0, 0, 0, 0)
    while load_labels(server.session.labels)[0] != expected and time.monotonic() < deadline:
        time.sleep(0.1)
    assert load_labels(server.session.labels, strict=True)[0] == expected


def test_serve_refuses_a_bad_grading_file(built_dataset, tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("patient_id,disc,disc_state,herniation,scs,rfs,lfs\nP1,L12,x,0,0,0,0\n")
    from lumbar.errors import LabelError

    with pytest.raises(LabelError, match="line 2, field 'disc_state'"):
        GradingServer(built_dataset, bad, port=0)
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen("http://127.0.0.1:9/", timeout=2)
