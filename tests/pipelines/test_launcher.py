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
