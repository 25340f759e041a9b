"""Every pipeline compiles; cluster settings land on exactly the right tasks; nothing secret is compiled in."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from components.images import TRAIN_CPU_IMAGE
from launch.launcher import PIPELINES, compile_pipeline, describe, parse_params
from pipelines.settings import ClusterSettings

LUMBAR = str(Path(sys.executable).with_name("lumbar"))
GPU_EXECUTORS = ("exec-train", "exec-pretrain-supervised", "exec-pretrain-ssl")
SECRET_VALUES = {
    "AWS_ACCESS_KEY_ID": "AKIA-TEST-KEY-DO-NOT-COMPILE",
    "AWS_SECRET_ACCESS_KEY": "wJalr-test-secret-do-not-compile",
    "LUMBAR_PSEUDONYM_SECRET": "pseudonym-secret-do-not-compile",
}


def _load(path: Path) -> tuple[dict, dict]:
    docs = list(yaml.safe_load_all(path.read_text()))
    return docs[0], docs[1] if len(docs) > 1 else {}


def _is_gpu(executor: str) -> bool:
    return any(executor == g or executor.startswith(g + "-") for g in GPU_EXECUTORS)


def _tasks(spec: dict):
    """Every task of every DAG: (name, task spec)."""
    dags = [spec["root"]["dag"], *(c["dag"] for c in spec["components"].values() if "dag" in c)]
    for dag in dags:
        yield from dag["tasks"].items()


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    out = tmp_path_factory.mktemp("compiled")
    saved = {k: os.environ.get(k) for k in SECRET_VALUES}
    os.environ.update(SECRET_VALUES)  # present while compiling: none of it may end up in the YAML
    try:
        return {name: compile_pipeline(name, out / f"{name}.yaml") for name in PIPELINES}
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k)
            else:
                os.environ[k] = v


@pytest.mark.parametrize("name", list(PIPELINES))
def test_gpu_only_on_training_tasks(compiled, name):
    spec, platform = _load(compiled[name])
    executors = spec["deploymentSpec"]["executors"]
    k8s = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    gpu_seen = 0
    for executor, body in executors.items():
        resources = body["container"]["resources"]
        assert resources.get("cpuRequest") and resources.get("memoryRequest"), executor
        placement = k8s.get(executor, {})
        if _is_gpu(executor):
            gpu_seen += 1
            assert resources["accelerator"]["resourceType"] == "nvidia.com/gpu"
            assert resources["accelerator"]["resourceCount"] == "1"
            assert placement["nodeSelector"]["labels"] == {"nvidia.com/gpu.present": "true"}
            assert placement["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
        else:
            assert "accelerator" not in resources, executor
            assert "nodeSelector" not in placement and "tolerations" not in placement, executor
        # credentials only by reference to the secret, the MLflow URI from the config map
        assert placement["secretAsEnv"][0]["secretName"] in ("lumbar-s3-datasets", "lumbar-s3-training")
        assert placement["configMapAsEnv"][0]["configMapName"] == "lumbar-config"
        # the run id from the pod's label (never a task input: tests/pipelines/test_backend.py, caching)
        run_id = {"name": "LUMBAR_KFP_RUN_ID", "fieldPath": "metadata.labels['pipeline/runid']"}
        assert run_id in placement["fieldPathAsEnv"], executor
    if name == "dataset_c":
        assert gpu_seen == 0
    else:
        assert gpu_seen >= 1


@pytest.mark.parametrize("name", list(PIPELINES))
def test_no_secret_in_compiled_yaml(compiled, name):
    text = compiled[name].read_text()
    for value in SECRET_VALUES.values():
        assert value not in text
    spec, _ = _load(compiled[name])
    params = spec["root"].get("inputDefinitions", {}).get("parameters", {})
    assert not any(word in p.lower() for p in params for word in ("secret", "password", "key", "token"))


@pytest.mark.parametrize("name", list(PIPELINES))
def test_caching_fetch_on_builds_and_training_off(compiled, name):
    spec, _ = _load(compiled[name])
    for task_name, task in _tasks(spec):
        cache = task.get("cachingOptions", {}).get("enableCache", False)
        executor = spec["components"][task["componentRef"]["name"]].get("executorLabel", "")
        if executor.startswith("exec-fetch-dataset"):  # takes a pinned version (tests/pipelines/test_backend.py)
            assert cache, task_name
        if executor.startswith(("exec-build-dataset", "exec-resolve-dataset")):  # mutable sources, publishing
            assert not cache, task_name
        if _is_gpu(executor):
            assert not cache, task_name


def test_pseudonym_secret_reaches_only_dataset_builds(compiled):
    _, platform = _load(compiled["paper"])
    for executor, placement in platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"].items():
        names = {s["secretName"] for s in placement.get("secretAsEnv", [])}
        assert ("lumbar-pseudonym" in names) == executor.startswith(("exec-build-dataset-c", "exec-build-dataset-b"))


@pytest.mark.parametrize("name", ["procedure1", "procedure2", "procedure3", "paper"])
def test_every_comparison_table_says_where_the_data_came_from(compiled, name):
    """``data_origin=synthetic`` labels our numbers "ours on synthetic data" in each compare task's tables."""
    spec, _ = _load(compiled[name])
    assert spec["root"]["inputDefinitions"]["parameters"]["data_origin"]["defaultValue"] == "unknown"
    compares = [t for task_name, t in _tasks(spec) if task_name.startswith("compare")]
    assert len(compares) == (3 if name == "paper" else 1)
    for task in compares:
        origin = task["inputs"]["parameters"]["data_origin"]
        assert origin.get("componentInputParameter", "").endswith("data_origin"), origin


@pytest.mark.parametrize("name", ["procedure3", "paper"])
def test_shard_fit_reaches_the_dataset_b_build(compiled, name):
    """``shard_fit=stretch`` (Dataset B of ROI crops) is a pipeline parameter passed to the build."""
    spec, _ = _load(compiled[name])
    assert spec["root"]["inputDefinitions"]["parameters"]["shard_fit"]["defaultValue"] == "pad"
    (build,) = [t for task_name, t in _tasks(spec) if task_name == "build-dataset-b"]
    fit = build["inputs"]["parameters"]["fit"]
    assert fit.get("componentInputParameter", "").endswith("shard_fit")


def test_procedure1_fans_out_with_the_configured_parallelism(tmp_path):
    path = compile_pipeline("procedure1", tmp_path / "p1.yaml", ClusterSettings(parallelism=3))
    spec, _ = _load(path)
    loops = [t for _, t in _tasks(spec) if "parameterIterator" in t]
    assert len(loops) == 1
    assert loops[0]["iteratorPolicy"]["parallelismLimit"] == 3


def test_compile_cli_settings(tmp_path):
    out = tmp_path / "p2.yaml"
    result = subprocess.run(
        [
            LUMBAR, "pipeline", "compile", "procedure2", "-o", str(out),
            "--gpu-node-selector", "cloud.google.com/gke-accelerator=nvidia-l4",
            "--gpu-toleration", "gpu-only:NoExecute",
        ],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,  # no images.lock.json there
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    # no registry given and no lock file: the local names, and one line saying a cluster cannot pull them
    assert "note: the pipelines use the locally built images (lumbar-train:" in result.stderr
    _, platform = _load(out)
    placement = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]["exec-train"]
    assert placement["nodeSelector"]["labels"] == {"cloud.google.com/gke-accelerator": "nvidia-l4"}
    assert placement["tolerations"][0] == {"key": "gpu-only", "operator": "Exists", "effect": "NoExecute"}

    cpu_only = tmp_path / "cpu.yaml"
    result = subprocess.run(
        [LUMBAR, "pipeline", "compile", "procedure1", "-o", str(cpu_only), "--no-gpu"],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,  # no images.lock.json there
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    spec, platform = _load(cpu_only)
    assert all("accelerator" not in e["container"]["resources"] for e in spec["deploymentSpec"]["executors"].values())
    # no GPU, no CUDA: training runs in the training image's CPU variant
    assert spec["deploymentSpec"]["executors"]["exec-train"]["container"]["image"] == TRAIN_CPU_IMAGE
    assert "nodeSelector" not in platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]["exec-train"]


def test_components_use_the_pinned_images(compiled):
    from components.images import BASE_IMAGE, TRAIN_IMAGE
    from lumbar import __version__

    spec, _ = _load(compiled["paper"])
    for executor, body in spec["deploymentSpec"]["executors"].items():
        image = body["container"]["image"]
        assert image == (TRAIN_IMAGE if _is_gpu(executor) else BASE_IMAGE), executor
        assert f":{__version__}-" in image
        # no pip install of kfp at run time: the images carry it (air-gapped clusters)
        assert "pip install" not in " ".join(body["container"]["command"])


def test_parse_params_types_and_errors():
    values = parse_params("procedure1", ["dataset_uri=s3://b/datasets/dataset-c/latest", "epochs=3", "seed=7"])
    assert values == {"dataset_uri": "s3://b/datasets/dataset-c/latest", "epochs": 3, "seed": 7}
    assert describe("procedure1")["parameters"]["dataset_uri"]["required"]
    from lumbar.errors import InputError

    with pytest.raises(InputError, match="must be int"):
        parse_params("procedure1", ["dataset_uri=x", "epochs=many"])
    with pytest.raises(InputError, match="has no parameter 'epoch'"):
        parse_params("procedure1", ["dataset_uri=x", "epoch=3"])
    with pytest.raises(InputError, match="needs parameter dataset_uri"):
        parse_params("procedure1", [])


def test_pipeline_parameters_come_from_the_one_registry():
    """Every pipeline's parameters are declared once in pipelines.parameters; a name not there is refused."""
    from pipelines.parameters import PARAMETERS, parameters

    used = set()
    for name in PIPELINES:
        for param, spec in describe(name)["parameters"].items():
            assert spec["type"] == PARAMETERS[param].type.__name__, (name, param)
            used.add(param)
    assert used == set(PARAMETERS)  # none declared that no pipeline takes
    assert describe("procedure2")["parameters"]["backbones"]["default"] == "vgg16,vgg19"  # its own default
    with pytest.raises(ValueError, match="no pipeline parameter epoch"):
        parameters("dataset_uri epoch")
    with pytest.raises(ValueError, match="no pipeline parameter seed"):
        parameters("dataset_uri", seed=1)  # a default of a parameter it does not take


def test_submit_to_an_unreachable_host_says_so():
    result = subprocess.run(
        [LUMBAR, "pipeline", "submit", "dataset_c", "--host", "http://127.0.0.1:9", "export_uri=s3://pacs/export"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.strip().startswith("error: cannot reach Kubeflow Pipelines at http://127.0.0.1:9")
    assert "Traceback" not in result.stderr


def test_run_needs_local_and_list_shows_all():
    result = subprocess.run([LUMBAR, "pipeline", "run", "dataset_c", "export_uri=/x"], capture_output=True, text=True)
    assert result.returncode == 2 and "--local" in result.stderr
    listed = subprocess.run([LUMBAR, "pipeline", "list"], capture_output=True, text=True, timeout=120)
    assert listed.returncode == 0
    for name in PIPELINES:
        assert name in listed.stdout


def test_library_never_imports_kfp():
    code = (
        "import sys, pkgutil, importlib, lumbar\n"
        "for m in pkgutil.walk_packages(lumbar.__path__, 'lumbar.'):\n"
        "    importlib.import_module(m.name)\n"
        "print(sorted(k for k in sys.modules if k == 'kfp' or k.startswith('kfp.')))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
