"""The services' containers (launch/containers.py) run as k8s/base deploys them: the two cannot drift apart.

No engine is needed: the translation of every workload of the stack is compared with its rendered
manifest field by field. ``make test-images`` starts the same translation on a real engine.
"""

import pytest

from launch.containers import LOOPBACK, STACK, ContainerRun, expand, generated_secrets, translate, workloads

pytestmark = pytest.mark.skipif(not __import__("shutil").which("kubectl"), reason="needs kubectl (make kubectl)")


@pytest.fixture(scope="module")
def rendered():
    objects = workloads()
    services = [o["metadata"]["name"] for o in objects if o["kind"] == "Service"]
    return {(o["kind"], o["metadata"]["name"]): o for o in objects}, services


@pytest.fixture(scope="module")
def secrets():
    return generated_secrets()


@pytest.mark.parametrize("key", STACK, ids=[name for _, name in STACK])
def test_each_container_runs_as_its_manifest_says(rendered, secrets, key, tmp_path):
    objects, services = rendered
    workload = objects[key]
    run = translate(workload, secrets=secrets, services=services, files=tmp_path)
    pod = workload["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    # the same image, command and arguments; only Kubernetes' $(POD_IP) becomes the loopback address
    assert run.image == container["image"]
    assert list(run.entrypoint) == container.get("command", [])
    assert list(run.args) == [a.replace("$(POD_IP)", LOOPBACK) for a in container.get("args", [])]
    # every variable, in the manifest's order: literal values (Service hosts on loopback) and secrets
    assert list(run.env) == [e["name"] for e in container.get("env", [])]
    for item in container.get("env", []):
        value = run.env[item["name"]]
        if "value" in item:
            assert value == item["value"] or LOOPBACK in value, item
            assert not any(f"//{s}:" in value for s in services), item
            assert value == item["value"] or item["name"].endswith(("HOST", "URL", "ENDPOINT")), item
        elif "secretKeyRef" in item["valueFrom"]:
            ref = item["valueFrom"]["secretKeyRef"]
            assert value == secrets[ref["name"]][ref["key"]]
    # the same user and hardening
    context = {**pod["securityContext"], **container["securityContext"]}
    assert run.user == f"{context['runAsUser']}:{context['runAsGroup']}" and context["runAsUser"] != 0
    assert run.read_only and run.drop_all and run.no_new_privileges
    args = run.docker_args("c")
    assert ["--user", run.user] == args[args.index("--user") : args.index("--user") + 2]
    assert "--read-only" in args and args[args.index("--cap-drop") :][:2] == ["--cap-drop", "ALL"]
    # every mount: emptyDir as tmpfs, volume claims as Docker volumes, secrets as read-only files
    mounts = {m["mountPath"] for m in container.get("volumeMounts", [])}
    assert mounts == {*run.tmpfs, *(p for _, p in run.volumes), *(p for _, p in run.files)}
    # no secret value on the command line: the environment goes by name
    for value in run.env.values():
        if len(value) > 12:
            assert value not in " ".join(args)


def test_seaweedfs_reads_its_identities_from_the_secret_volume(rendered, secrets, tmp_path):
    objects, services = rendered
    run = translate(objects[("StatefulSet", "seaweedfs")], secrets=secrets, services=services, files=tmp_path)
    (_folder, mount) = run.files[0]
    assert mount == "/etc/seaweedfs" and f"-s3.config={mount}/s3.json" in run.args
    assert (tmp_path / "seaweedfs" / "s3-config" / "s3.json").read_text() == secrets["lumbar-seaweedfs-s3"]["s3.json"]
    assert run.volumes == (("lumbar-seaweedfs-data", "/data"),) and run.ready.port == 8333


def test_mlflow_reaches_postgres_and_seaweedfs_on_loopback(rendered, secrets, tmp_path):
    objects, services = rendered
    run = translate(objects[("Deployment", "mlflow")], secrets=secrets, services=services, files=tmp_path)
    assert run.env["PGHOST"] == LOOPBACK and run.env["MLFLOW_S3_ENDPOINT_URL"] == f"http://{LOOPBACK}:8333"
    assert run.env["PGDATABASE"] == "mlflow"  # a value equal to a Service name, but no host: unchanged
    assert run.env["PGPASSWORD"] == secrets["lumbar-postgres"]["POSTGRES_PASSWORD"]
    bucket = translate(objects[("Job", "lumbar-bucket")], secrets=secrets, services=services, files=tmp_path)
    assert bucket.job and bucket.env["AWS_ACCESS_KEY_ID"] == secrets["lumbar-s3-admin"]["AWS_ACCESS_KEY_ID"]


def test_a_missing_secret_is_one_sentence(rendered, tmp_path):
    objects, services = rendered
    from lumbar.errors import InputError

    with pytest.raises(InputError, match="postgres needs key POSTGRES_USER of the Secret lumbar-postgres"):
        translate(objects[("StatefulSet", "postgres")], secrets={}, services=services, files=tmp_path)


def test_kubernetes_expansion_rules():
    env = {"POD_IP": "10.0.0.7"}
    assert expand("-ip=$(POD_IP)", env) == "-ip=10.0.0.7"
    assert expand("$$(POD_IP) $(UNSET)", env) == "$(POD_IP) $(UNSET)"
    run = ContainerRun(name="x", image="i", entrypoint=("weed",), args=("mini",))
    assert run.docker_args("c")[-4:] == ["--entrypoint", "weed", "i", "mini"]
