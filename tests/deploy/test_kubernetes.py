"""The Kubernetes manifests of deploy/kubernetes: generated from deploy/services.conf and up to date,
valid against the Kubernetes API schemas (kubernetes-validate, strict) and the operators' CRD schemas
(deploy/kubernetes/crd-schemas, jsonschema), and wired as docs/kubernetes.md says: every service with
probes, resources, a PodDisruptionBudget, a KEDA ScaledObject on its consumer groups' lag and its own
CloudNativePG database; every CONTRACT topic and its .dlq as a Strimzi KafkaTopic (RF 3, min ISR 2)."""

import shutil
import subprocess
import sys
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml

from oms_contracts.topics import ALL_TOPICS, dlq
from tests.deploy.support import DEPLOY, ROOT, load_script
from tests.test_compose import SERVICE_IDS, SERVICES

K8S = DEPLOY / "kubernetes"
SCHEMAS = K8S / "crd-schemas"
KUBERNETES_VERSION = "1.33.0"
generate = load_script("kubernetes/generate.py")


def build() -> list[dict]:
    """What `kubectl apply -k deploy/kubernetes` applies: the kustomization's resources, in order
    (it has nothing but `resources`, checked below, so reading them is the whole rendering)."""
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    docs = []
    for resource in kustomization["resources"]:
        docs += [d for d in yaml.safe_load_all((K8S / resource).read_text()) if d]
    return docs


DOCS = build()


def by_kind(kind: str) -> dict[str, dict]:
    return {d["metadata"]["name"]: d for d in DOCS if d["kind"] == kind}


def doc_id(doc: dict) -> str:
    return f"{doc['kind']}/{doc['metadata']['name']}"


def test_manifests_are_generated_from_services_conf_and_fresh():
    done = subprocess.run([sys.executable, str(K8S / "generate.py"), "--check"], capture_output=True, text=True,
                          cwd=ROOT, timeout=300)
    assert done.returncode == 0, done.stderr


def test_the_kustomization_only_lists_resources():
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert set(kustomization) == {"apiVersion", "kind", "resources"}
    assert kustomization["kind"] == "Kustomization"


def test_kustomize_renders_the_same_objects_where_available():
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("no kubectl here")
    done = subprocess.run([kubectl, "kustomize", str(K8S)], capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        pytest.skip(f"kubectl kustomize does not run here: {done.stderr.strip()[:200]}")
    rendered = sorted(doc_id(d) for d in yaml.safe_load_all(done.stdout) if d)
    assert rendered == sorted(doc_id(d) for d in DOCS)


def test_names_are_unique_per_kind():
    ids = [(d["apiVersion"], doc_id(d), d["metadata"].get("namespace")) for d in DOCS]
    assert len(ids) == len(set(ids))


BUILTIN = [d for d in DOCS if "." not in d["apiVersion"].split("/")[0] or d["apiVersion"].startswith("policy/")]
CUSTOM = [d for d in DOCS if d not in BUILTIN]


@pytest.mark.parametrize("doc", BUILTIN, ids=doc_id)
def test_kubernetes_objects_are_valid(doc: dict):
    kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def crd_validator(doc: dict) -> jsonschema.Draft7Validator:
    group, _, version = doc["apiVersion"].rpartition("/")
    path = SCHEMAS / f"{group}_{version}_{doc['kind']}.yaml"
    assert path.is_file(), f"no schema kept for {doc['apiVersion']} {doc['kind']} in {SCHEMAS}"
    schema = yaml.safe_load(path.read_text())
    return jsonschema.Draft7Validator({**schema["openAPIV3Schema"], "definitions": schema.get("definitions", {})})


@pytest.mark.parametrize("doc", CUSTOM, ids=doc_id)
def test_custom_resources_match_the_operators_schemas(doc: dict):
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in crd_validator(doc).iter_errors(doc)]
    assert not errors, errors


def test_the_crd_schemas_refuse_what_the_operators_refuse():
    # A check that accepted anything would prove nothing: the kept schemas catch real mistakes.
    topic = next(iter(by_kind("KafkaTopic").values()))
    bad = {**topic, "spec": {**topic["spec"], "partitions": 0}}
    assert not crd_validator(bad).is_valid(bad)
    scaled = next(iter(by_kind("ScaledObject").values()))
    trigger = {**scaled["spec"]["triggers"][0], "metadata": {"lagThreshold": 100}}  # KEDA wants strings
    bad = {**scaled, "spec": {**scaled["spec"], "triggers": [trigger]}}
    assert not crd_validator(bad).is_valid(bad)
    kafka = by_kind("Kafka")["oms"]
    listener = {**kafka["spec"]["kafka"]["listeners"][0], "name": "plain-listener"}  # Strimzi: 1-11 [a-z0-9]
    bad = {**kafka, "spec": {**kafka["spec"], "kafka": {**kafka["spec"]["kafka"], "listeners": [listener]}}}
    assert not crd_validator(bad).is_valid(bad)
    cluster = next(iter(by_kind("Cluster").values()))
    bad = {**cluster, "spec": {**cluster["spec"], "instancez": 3}}
    assert not crd_validator(bad).is_valid(bad)


@pytest.mark.parametrize("svc", SERVICES, ids=SERVICE_IDS)
def test_each_service_deployment(svc):
    deployment = by_kind("Deployment")[svc.name]
    pod = deployment["spec"]["template"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    (container,) = pod["spec"]["containers"]
    assert container["ports"] == [{"name": "http", "containerPort": svc.port, "protocol": "TCP"}]
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert {"cpu", "memory"} <= container["resources"]["requests"].keys()
    assert "memory" in container["resources"]["limits"]
    assert "replicas" not in deployment["spec"], "KEDA's autoscaler owns the replica count"
    # Configuration: the common and the service's ConfigMap, the secrets, and its database's URI.
    configmaps = by_kind("ConfigMap")
    refs = [next(iter(e.values()))["name"] for e in container["envFrom"]]
    assert refs == ["oms-common", f"{svc.name}-config", "oms-secrets"]
    assert configmaps[f"{svc.name}-config"]["data"] == {"SERVICE_NAME": svc.name, "HTTP_PORT": str(svc.port)}
    (database_url,) = [e for e in container["env"] if e["name"] == "DATABASE_URL"]
    assert database_url["valueFrom"]["secretKeyRef"] == {"name": f"{svc.name}-db-app", "key": "uri"}


@pytest.mark.parametrize("svc", SERVICES, ids=SERVICE_IDS)
def test_each_service_is_reachable_protected_and_has_its_database(svc):
    labels = by_kind("Deployment")[svc.name]["spec"]["template"]["metadata"]["labels"]
    service = by_kind("Service")[svc.name]
    assert service["spec"]["selector"].items() <= labels.items()
    assert service["spec"]["ports"][0]["port"] == svc.port
    pdb = by_kind("PodDisruptionBudget")[svc.name]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert pdb["spec"]["minAvailable"] == 1
    cluster = by_kind("Cluster")[f"{svc.name}-db"]
    assert cluster["spec"]["bootstrap"]["initdb"] == {"database": svc.database, "owner": svc.database}
    assert cluster["spec"]["instances"] >= 2


@pytest.mark.parametrize("svc", SERVICES, ids=SERVICE_IDS)
def test_each_service_scales_on_its_consumer_groups_lag(svc):
    scaled = by_kind("ScaledObject")[svc.name]["spec"]
    assert scaled["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": svc.name}
    assert scaled["minReplicaCount"] >= 2 > 1 == by_kind("PodDisruptionBudget")[svc.name]["spec"]["minAvailable"]
    kafka = [t["metadata"] for t in scaled["triggers"] if t["type"] == "kafka"]
    # The groups and topics the service really consumes, from its own runtime.
    runtime = generate.runtime_of(generate.Service(svc.name, svc.module, svc.port, svc.database))
    expected = {(runtime.group_id(c), topic) for c in runtime.consumers for topic in c.topics}
    assert {(m["consumerGroup"], m["topic"]) for m in kafka} == expected
    bootstrap = by_kind("ConfigMap")["oms-common"]["data"]["KAFKA_BOOTSTRAP_SERVERS"]
    topics = by_kind("KafkaTopic")
    for m in kafka:
        assert m["bootstrapServers"] == bootstrap
        assert int(m["lagThreshold"]) > 0 and m["topic"] in topics
    partitions = min(topics[m["topic"]]["spec"]["partitions"] for m in kafka) if kafka else scaled["maxReplicaCount"]
    assert scaled["maxReplicaCount"] <= partitions, "replicas beyond the partition count would sit idle"


def test_every_contract_topic_and_its_dlq_is_a_kafka_topic():
    topics = by_kind("KafkaTopic")
    kafka = by_kind("Kafka")
    for topic in ALL_TOPICS:
        for name in (topic, dlq(topic)):
            assert name in topics, f"no KafkaTopic {name}"
            spec = topics[name]["spec"]
            assert spec["topicName"] == name
            assert spec["partitions"] >= 3 and spec["replicas"] == 3
            assert int(spec["config"]["min.insync.replicas"]) == 2
            assert topics[name]["metadata"]["labels"]["strimzi.io/cluster"] in kafka


def test_kafka_cluster_has_three_kraft_nodes_and_safe_defaults():
    (kafka,) = by_kind("Kafka").values()
    pools = [p for p in by_kind("KafkaNodePool").values()
             if p["metadata"]["labels"]["strimzi.io/cluster"] == kafka["metadata"]["name"]]
    assert sum(p["spec"]["replicas"] for p in pools if "broker" in p["spec"]["roles"]) >= 3
    assert sum(p["spec"]["replicas"] for p in pools if "controller" in p["spec"]["roles"]) in (3, 5)
    assert kafka["metadata"]["annotations"]["strimzi.io/node-pools"] == "enabled"
    config = kafka["spec"]["kafka"]["config"]
    assert config["default.replication.factor"] == 3 and config["min.insync.replicas"] == 2
    assert config["auto.create.topics.enable"] is False
    assert "topicOperator" in kafka["spec"]["entityOperator"]
    service = f"{kafka['metadata']['name']}-kafka-bootstrap:9092"  # Strimzi's bootstrap Service
    assert by_kind("ConfigMap")["oms-common"]["data"]["KAFKA_BOOTSTRAP_SERVERS"] == service


def test_secrets_are_created_by_the_operators_or_documented():
    referenced = set()
    for deployment in by_kind("Deployment").values():
        for container in deployment["spec"]["template"]["spec"]["containers"]:
            referenced |= {e["secretRef"]["name"] for e in container.get("envFrom", []) if "secretRef" in e}
            referenced |= {e["valueFrom"]["secretKeyRef"]["name"] for e in container.get("env", [])
                           if "secretKeyRef" in e.get("valueFrom", {})}
    from_cnpg = {f"{name}-app" for name in by_kind("Cluster")}
    docs = (ROOT / "docs" / "kubernetes.md").read_text()
    for name in referenced - from_cnpg:
        assert f"kubectl -n oms create secret generic {name}" in docs, f"docs/kubernetes.md: how to create {name}?"


def test_generation_follows_services_conf(tmp_path: Path):
    services = [generate.Service(s.name, s.module, s.port, s.database) for s in SERVICES[:1]]
    files = generate.render(services)
    assert set(files) == {"kustomization.yaml", "common.yaml", "kafka.yaml", "topics.yaml",
                          f"services/{services[0].name}.yaml"}
    assert yaml.safe_load(files["kustomization.yaml"])["resources"][-1] == f"services/{services[0].name}.yaml"
