"""kfp.local with two loop iterations at once: every task's start and end reach the log (launch.launcher)."""

import re

from kfp import dsl, local

from launch.launcher import one_logger_for_all_tasks


@dsl.component(base_image="python:3.11")
def _square(x: int) -> int:
    return x * x


@dsl.pipeline(name="four-squares")
def _four_squares():
    with dsl.ParallelFor([1, 2, 3, 4], parallelism=2) as x:
        _square(x=x)


def test_two_tasks_at_once_both_report_how_they_finished(tmp_path, capsys):
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(tmp_path), raise_on_error=True)
    with one_logger_for_all_tasks():
        _four_squares()
    out = re.sub(r"\x1b\[[0-9;]*m", "", capsys.readouterr().out)
    started = re.findall(r"Executing task '(square[^']*)'", out)
    finished = re.findall(r"Task '(square[^']*)' finished with status SUCCESS", out)
    # kfp.local's own per-task handler swap loses lines when two tasks overlap; one handler for the run does not
    assert len(started) == len(finished) == 4, out[-3000:]


@dsl.component(base_image="python:3.11", install_kfp_package=False)
def _where(tag: str) -> str:
    import json
    import os
    import sys

    print(f"task output {tag}")
    return json.dumps({"tag": os.environ.get("WARM_TEST_TAG"), "tf": "tensorflow" in sys.modules})


@dsl.component(base_image="python:3.11", install_kfp_package=False)
def _fails() -> str:
    raise ValueError("a task that fails on purpose")


def test_warm_tasks_fork_from_a_preloaded_process_and_fall_back_when_cold(tmp_path, capsys, monkeypatch):
    """Tasks fork from the zygote (TensorFlow already imported), see the run's environment, keep their output;
    a failed task fails with its traceback; without the zygote, kfp.local's own subprocess runs the task."""
    import json

    from launch.warm import warm_tasks

    monkeypatch.setenv("WARM_TEST_TAG", "seen")
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(tmp_path), raise_on_error=False)
    with warm_tasks() as zygote, one_logger_for_all_tasks():
        assert zygote is not None
        warm = json.loads(_where(tag="one").output)
        _fails()
        zygote.stop()  # gone: the next task starts cold
        cold = json.loads(_where(tag="two").output)
    out = capsys.readouterr().out
    assert warm == {"tag": "seen", "tf": True}  # forked from the zygote, which imported TensorFlow
    assert cold == {"tag": "seen", "tf": False}  # a fresh Python, as kfp.local starts it
    assert "task output one" in out and "task output two" in out
    assert "ValueError: a task that fails on purpose" in out
    assert re.search(r"Task '_?fails' finished with status FAILURE", re.sub(r"\x1b\[[0-9;]*m", "", out)), out[-2000:]


def test_the_zygote_ends_when_its_launcher_is_killed(tmp_path):
    """A launcher killed outright (no ``finally`` runs) leaves no zygote behind: the kernel ends it."""
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    script = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from launch.warm import Zygote\n"
        "zygote = Zygote(Path(sys.argv[1]), preload=())\n"
        "zygote.start()\n"
        "while not zygote.socket_path.exists():\n"
        "    time.sleep(0.05)\n"
        "print(zygote.process.pid, flush=True)\n"
        "time.sleep(600)\n"
    )
    repo = Path(__file__).resolve().parents[2]
    launcher = subprocess.Popen(
        [sys.executable, "-c", script, str(tmp_path)], cwd=repo, stdout=subprocess.PIPE, text=True
    )
    zygote = int(launcher.stdout.readline())
    os.kill(zygote, 0)  # running
    launcher.send_signal(signal.SIGKILL)
    launcher.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(zygote, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    raise AssertionError(f"the zygote {zygote} outlived its launcher")
