"""Least privilege in the compiled pipelines: each task references exactly its role's Secrets.

Parses the YAML that `lumbar pipeline compile` writes (the Kubernetes platform spec of every executor):
dataset builders get the dataset builders' S3 identity (and the pseudonym key, for the builds that
pseudonymise), every other task the training role's identity; all get the MLflow client user and the
config map; no task gets the object store's admin keys or any of the services' own Secrets.
"""

from pathlib import Path

import pytest
import yaml

from launch.launcher import PIPELINES, compile_pipeline
from pipelines.settings import MLFLOW_KEYS, PSEUDONYM_KEY, S3_KEYS, ClusterSettings

ROOT = Path(__file__).resolve().parents[2]
SETTINGS = ClusterSettings()
#: Secrets only the services in the namespace `lumbar` use (k8s/secrets): never a pipeline task's.
SERVICE_SECRETS = {
    "lumbar-s3-admin",
    "lumbar-s3-mlflow",
    "lumbar-seaweedfs-s3",
    "lumbar-postgres",
    "lumbar-mlflow-auth",
}
BUILDERS = ("exec-build-dataset-",)
PSEUDONYMISING = ("exec-build-dataset-b", "exec-build-dataset-c")


def _expected(executor: str) -> dict[str, set[str]]:
    """The Secrets (name -> keys) a task of this executor must reference, by its role."""
    builder = executor.startswith(BUILDERS)
    expected = {
        SETTINGS.dataset_secret if builder else SETTINGS.training_secret: set(S3_KEYS),
        SETTINGS.mlflow_secret: set(MLFLOW_KEYS),
    }
    if executor.startswith(PSEUDONYMISING):
        expected[SETTINGS.pseudonym_secret] = {PSEUDONYM_KEY}
    return expected


@pytest.fixture(scope="module")
def compiled(tmp_path_factory) -> dict[str, dict]:
    out = tmp_path_factory.mktemp("roles")
    result = {}
    for name in PIPELINES:
        docs = list(yaml.safe_load_all(compile_pipeline(name, out / f"{name}.yaml").read_text()))
        result[name] = docs[1]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    return result


@pytest.mark.parametrize("name", list(PIPELINES))
def test_each_task_references_only_its_roles_secrets(compiled, name):
    executors = compiled[name]
    assert executors
    roles = set()
    for executor, placement in executors.items():
        found: dict[str, set[str]] = {}
        for ref in placement.get("secretAsEnv", []):
            keys = {m["secretKey"] for m in ref["keyToEnv"]}
            assert {m["envVar"] for m in ref["keyToEnv"]} == keys, executor  # mounted under their own names
            found.setdefault(ref["secretName"], set()).update(keys)
        assert found == _expected(executor), executor
        assert not SERVICE_SECRETS & set(found), executor
        assert placement["configMapAsEnv"][0]["configMapName"] == SETTINGS.config_map, executor
        roles.add(SETTINGS.dataset_secret in found)
    if name != "dataset_c":  # every other pipeline trains: both roles appear, or only training
        assert False in roles


def test_the_pseudonym_key_reaches_only_pseudonymising_builds(compiled):
    holders = {
        executor
        for executors in compiled.values()
        for executor, placement in executors.items()
        if any(r["secretName"] == SETTINGS.pseudonym_secret for r in placement.get("secretAsEnv", []))
    }
    assert holders and all(h.startswith(PSEUDONYMISING) for h in holders)
    # the paper pipeline builds B and C (pseudonymised) and A (no patient identifiers to pseudonymise)
    paper = compiled["paper"]
    assert {e for e in paper if e.startswith(BUILDERS)} >= {"exec-build-dataset-a", *PSEUDONYMISING}


def test_the_role_secrets_exist_as_examples_for_the_pipeline_namespace():
    for name in (SETTINGS.dataset_secret, SETTINGS.training_secret, SETTINGS.mlflow_secret, SETTINGS.pseudonym_secret):
        doc = yaml.safe_load((ROOT / "k8s" / "secrets" / f"{name}.example.yaml").read_text())
        # no namespace: created in the pipeline namespace (kubeflow or a profile) with `kubectl -n`
        assert "namespace" not in doc["metadata"], name
