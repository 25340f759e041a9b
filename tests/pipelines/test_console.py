"""The quiet terminal of local runs, on a two-task pipeline run for real with kfp.local (seconds, no training)."""

import os
import sys

import pytest
from google.protobuf.json_format import MessageToDict
from kfp import dsl, local

from launch.console import TaskRecord, TaskWatcher, expected_tasks, output_to_log
from launch.launcher import get


@dsl.component(base_image="python:3.11", install_kfp_package=False)
def shout(text: str) -> str:
    import sys

    print(f"stdout says {text}")
    print(f"stderr says {text}", file=sys.stderr)
    return text + "!"


@dsl.component(base_image="python:3.11", install_kfp_package=False)
def fit(text: str, backbone: str, mode: str, roi: bool) -> str:
    print(f"fitting {backbone} on {text}")
    return backbone


@dsl.component(base_image="python:3.11", install_kfp_package=False)
def fail(text: str):
    for i in range(30):
        print(f"working {i} on {text}")
    raise ValueError(f"boom on {text}")


@dsl.pipeline(name="two-shouts")
def two_shouts(text: str = "hello"):
    first = shout(text=text)
    fit(text=first.output, backbone="vgg16", mode="finetune", roi=True)


@dsl.pipeline(name="shout-then-fail")
def shout_then_fail():
    first = shout(text="x")
    fail(text=first.output)


def _run(pipeline, tmp_path, log, watcher):
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(tmp_path / "root"), raise_on_error=True)
    with output_to_log(log, watcher.feed) as terminal:
        terminal.write("on the terminal\n")
        os.write(1, b"straight to file descriptor 1\n")
        pipeline()


def test_output_goes_to_the_log_and_tasks_are_seen(tmp_path, capfd):
    log = tmp_path / "logs" / "run.log"
    seen = []
    watcher = TaskWatcher(on_finish=seen.append)
    stdout = sys.stdout
    _run(two_shouts, tmp_path, log, watcher)
    assert sys.stdout is stdout  # restored
    terminal = capfd.readouterr()
    assert terminal.out == "on the terminal\n" and terminal.err == ""
    text = log.read_text()
    for expected in ("stdout says hello", "stderr says hello", "fitting vgg16 on hello!", "to file descriptor 1"):
        assert expected in text
    assert "Executing task" in text and "finished with status" in text  # kfp.local's own lines
    assert [(r.name, r.status) for r in seen] == [("shout", "SUCCESS"), ("fit", "SUCCESS")]
    assert watcher.finished == seen and watcher.failed is None and all(r.seconds > 0 for r in seen)
    assert any("stdout says hello" in line for line in seen[0].tail)
    # the executor's input, as the task printed it: what each task worked on
    assert seen[0].executor_input["inputs"]["parameterValues"] == {"text": "hello"} and seen[0].subject == ""
    assert seen[1].subject == "vgg16 finetune roi"
    model = {"name": "model", "metadata": {"backbone": "vgg16", "name": "vgg16-frozen-roi"}}
    evaluated = TaskRecord(
        "evaluate", "SUCCESS", 1.0, executor_input={"inputs": {"artifacts": {"model": {"artifacts": [model]}}}}
    )
    compared = TaskRecord(
        "compare", "SUCCESS", 1.0, executor_input={"inputs": {"artifacts": {"metrics": {"artifacts": [model, model]}}}}
    )
    assert evaluated.subject == "vgg16-frozen-roi" and compared.subject == ""  # one model, not a collected list
    assert expected_tasks(MessageToDict(two_shouts.pipeline_spec), {}) == len(seen)


def test_a_failed_task_keeps_its_last_lines(tmp_path, capfd):
    log = tmp_path / "run.log"
    watcher = TaskWatcher(tail=20)
    with pytest.raises(RuntimeError, match="fail"):
        _run(shout_then_fail, tmp_path, log, watcher)
    assert capfd.readouterr().out == "on the terminal\n"
    failed = watcher.failed
    assert failed is not None and failed.name == "fail" and failed.status == "FAILURE"
    assert len(failed.tail) == 20 and "ValueError: boom on x!" in "\n".join(failed.tail)
    assert not any("stdout says" in line for line in failed.tail)  # the earlier task's lines are not its own
    assert "working 0 on x!" in log.read_text()


def test_expected_tasks_of_the_paper_pipeline_follow_its_fan_out():
    """Procedure 1 fans out over backbones x modes x images, procedures 2 and 3 over their backbones x images."""
    spec = MessageToDict(get("paper").pipeline_spec)
    one = expected_tasks(spec, {"backbones": "vgg16", "pretrain_backbones": "vgg16"})
    two = expected_tasks(spec, {"backbones": "vgg16,vgg19", "pretrain_backbones": "vgg16"})
    three = expected_tasks(spec, {"backbones": "vgg16,vgg19", "pretrain_backbones": "vgg16,vgg19"})
    assert two - one == 2 * 2 * 2  # train + evaluate per mode and image type
    assert three - two == 2 * 5  # procedures 2 and 3: pretrain + 2 x (train + evaluate) per backbone (ROI only)
