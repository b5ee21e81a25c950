"""Prometheus, its alert rules and the Grafana dashboard of docker-compose.yml, checked as promtool
would check them (no Prometheus binary here): rule file structure, every PromQL expression parsed and
type-checked by promql-parser, durations, templates referring only to labels the expression keeps,
metric names the services emit or CONTRACT.md promises; and the scrape targets follow services.conf."""

import json
import os
import re
import subprocess
from pathlib import Path

import promql_parser
import pytest
import yaml

from tests.deploy.support import DEPLOY, ROOT
from tests.test_compose import SERVICES, mounts_of

RULES_DIR = DEPLOY / "prometheus" / "rules"
RULE_FILES = sorted(RULES_DIR.glob("*.yml"))
ENTRYPOINT = DEPLOY / "prometheus" / "entrypoint.sh"
DASHBOARDS = sorted((DEPLOY / "grafana" / "dashboards").glob("*.json"))
PROVISIONING = DEPLOY / "grafana" / "provisioning"
RUNBOOK = ROOT / "docs" / "observability.md"

# CONTRACT.md: "exposes at least these series on /metrics" (some are added by other work: the rules
# are written to these names whether or not the code emits them yet).
CONTRACT_METRICS = {"oms_http_request_seconds", "oms_outbox_unsent", "oms_outbox_oldest_unsent_age_seconds",
                    "oms_consumer_lag", "oms_dlq_messages_total", "oms_saga_stuck", "oms_orders_placed_total"}
ALERTED = {"oms_saga_stuck", "oms_outbox_unsent", "oms_outbox_oldest_unsent_age_seconds", "oms_consumer_lag",
           "oms_dlq_messages_total"}
RULE_KEYS = {"alert", "record", "expr", "for", "keep_firing_for", "labels", "annotations"}
# {{ $value }} or {{ $labels.x }}, optionally piped into one of Prometheus' humanize functions.
TEMPLATE_ACTION = re.compile(r"\s*\$(value|labels\.[a-z_]+)(\s*\|\s*humanize(Duration|Percentage)?)?\s*")
GROUP_KEYS = {"name", "interval", "rules", "limit", "query_offset", "labels"}


def series_names(base: str, kind: str) -> set[str]:
    if kind == "Histogram":
        return {f"{base}_bucket", f"{base}_sum", f"{base}_count", base}
    if kind == "Counter":
        return {base if base.endswith("_total") else f"{base}_total"}
    return {base}


def known_series() -> set[str]:
    """Series the code declares (prometheus_client), those CONTRACT.md promises, and Prometheus' `up`."""
    found = {"up"}
    pattern = re.compile(r'\b(Counter|Gauge|Histogram|Summary)\(\s*"(oms_[a-z0-9_]+)"')
    for folder in ("libs", "services"):
        for path in (ROOT / folder).rglob("*.py"):
            for kind, name in pattern.findall(path.read_text()):
                found |= series_names(name, kind)
    for name in CONTRACT_METRICS:
        found |= series_names(name, "Histogram" if name.endswith("_seconds") and "age" not in name else "Gauge")
    return found


def selectors(expr) -> list:
    found = []

    def visit(node) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            found.append(node)

    promql_parser.walk(expr, visit)
    return found


def kept_labels(expr) -> set[str] | None:
    """Labels an expression's result keeps: a set when an aggregation fixes them, None when all are kept."""
    if isinstance(expr, promql_parser.AggregateExpr):
        modifier = expr.modifier
        if modifier is not None and modifier.type == promql_parser.AggModifierType.By:
            return set(modifier.labels)
        return set() if modifier is None else None
    if isinstance(expr, promql_parser.BinaryExpr):
        return kept_labels(expr.lhs)  # `and`, comparisons and arithmetic keep the left side's labels
    if isinstance(expr, promql_parser.ParenExpr):
        return kept_labels(expr.expr)
    if isinstance(expr, promql_parser.Call):
        vectors = [a for a in expr.args if not isinstance(a, promql_parser.NumberLiteral | promql_parser.StringLiteral)]
        return kept_labels(vectors[0]) if vectors else set()
    return None


def check_expr(text: str, where: str) -> object:
    try:
        expr = promql_parser.parse(text)
    except ValueError as err:
        raise AssertionError(f"{where}: PromQL does not parse: {err}: {text}") from err
    bad = (promql_parser.MatrixSelector, promql_parser.NumberLiteral, promql_parser.StringLiteral,
           promql_parser.SubqueryExpr)
    assert not isinstance(expr, bad), f"{where}: an instant vector is needed, got {type(expr).__name__}"
    if isinstance(expr, promql_parser.Call):
        assert expr.func.return_type == promql_parser.ValueType.Vector, f"{where}: {expr.func.name} is not a vector"
    known = known_series()
    for selector in selectors(expr):
        assert selector.name in known, f"{where}: unknown metric {selector.name} (not emitted, not in CONTRACT.md)"
    return expr


def load_rules() -> list[tuple[Path, dict, dict]]:
    rules = []
    for path in RULE_FILES:
        doc = yaml.safe_load(path.read_text())
        assert set(doc) == {"groups"}, f"{path.name}: only `groups` at the top"
        for group in doc["groups"]:
            rules += [(path, group, rule) for rule in group["rules"]]
    return rules


def test_there_are_rule_files():
    assert RULE_FILES and load_rules()


@pytest.mark.parametrize("path", RULE_FILES, ids=[p.name for p in RULE_FILES])
def test_rule_file_structure(path: Path):
    doc = yaml.safe_load(path.read_text())
    names = [g["name"] for g in doc["groups"]]
    assert len(names) == len(set(names)), "group names must be unique in a file"
    for group in doc["groups"]:
        assert set(group) <= GROUP_KEYS, f"{group['name']}: unknown keys {set(group) - GROUP_KEYS}"
        assert group["rules"], f"{group['name']}: no rules"
        for rule in group["rules"]:
            assert set(rule) <= RULE_KEYS, f"unknown keys {set(rule) - RULE_KEYS} in {rule}"
            assert ("alert" in rule) != ("record" in rule), f"a rule is an alert or a recording rule: {rule}"
            assert isinstance(rule["expr"], str) and rule["expr"].strip()
            for key in ("for", "keep_firing_for"):
                if key in rule:
                    assert re.fullmatch(r"(\d+(ms|s|m|h|d|w|y))+", rule[key]), f"{key}: {rule[key]!r}"
                    promql_parser.parse_duration(rule[key])
            for section in ("labels", "annotations"):
                assert all(isinstance(v, str) for v in (rule.get(section) or {}).values()), section


def test_alert_names_are_unique_and_labelled():
    alerts = [rule for _, _, rule in load_rules() if "alert" in rule]
    names = [r["alert"] for r in alerts]
    assert len(names) == len(set(names))
    for rule in alerts:
        assert re.fullmatch(r"[A-Z][A-Za-z0-9]+", rule["alert"])
        assert rule["labels"]["severity"] in {"page", "warning"}
        assert {"summary", "description", "runbook"} <= set(rule["annotations"])


@pytest.mark.parametrize("rule", [r for _, _, r in load_rules()], ids=lambda r: r.get("alert") or r.get("record"))
def test_rule_expression_and_templates(rule: dict):
    expr = check_expr(rule["expr"], rule.get("alert") or rule.get("record"))
    kept = kept_labels(expr)
    for text in rule["annotations"].values():
        assert text.count("{{") == text.count("}}"), f"unbalanced template: {text}"
        for action in re.findall(r"{{(.*?)}}", text):
            assert TEMPLATE_ACTION.fullmatch(action), f"unexpected template action {{{{{action}}}}}"
            label = re.search(r"\$labels\.([a-z_]+)", action)
            if label and kept is not None:
                assert label.group(1) in kept, f"{{{{{action}}}}}: the expression drops label {label.group(1)}"


def test_the_contract_metrics_have_alerts():
    alerts = [rule for _, _, rule in load_rules() if "alert" in rule]
    used = {s.name for rule in alerts for s in selectors(promql_parser.parse(rule["expr"]))}
    assert ALERTED <= used, f"no alert on {ALERTED - used}"


def test_every_runbook_anchor_exists():
    anchors = {re.sub(r"[^a-z0-9-]", "", h.lower().replace(" ", "-"))
               for h in re.findall(r"^#+ (.+)$", RUNBOOK.read_text(), re.M)}
    for _, _, rule in load_rules():
        if "alert" in rule:
            doc, _, anchor = rule["annotations"]["runbook"].partition("#")
            assert doc == "docs/observability.md" and anchor in anchors, rule["alert"]


def prometheus_config(conf: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMS_PROMETHEUS_DRY_RUN": "1", "OMS_SERVICES_CONF": str(conf)}
    return subprocess.run(["sh", str(ENTRYPOINT)], env=env, capture_output=True, text=True, timeout=30)


def scrape_targets(config: dict) -> dict[str, str]:
    job = next(j for j in config["scrape_configs"] if j["job_name"] == "oms")
    assert job.get("metrics_path", "/metrics") == "/metrics"
    return {sc["labels"]["service"]: t for sc in job["static_configs"] for t in sc["targets"]}


def test_prometheus_scrapes_every_service_of_services_conf():
    done = prometheus_config(DEPLOY / "services.conf")
    assert done.returncode == 0, done.stderr
    config = yaml.safe_load(done.stdout)
    assert scrape_targets(config) == {s.name: f"{s.name}:{s.port}" for s in SERVICES}
    assert config["rule_files"] == ["/etc/prometheus/rules/*.yml"]


def test_prometheus_targets_follow_services_conf(tmp_path: Path):
    conf = tmp_path / "services.conf"
    conf.write_text("# a comment\n\norder-capture  order_capture  8001  order_capture\nreturns returns 8005 returns\n")
    done = prometheus_config(conf)
    assert done.returncode == 0, done.stderr
    assert scrape_targets(yaml.safe_load(done.stdout)) == {"order-capture": "order-capture:8001",
                                                           "returns": "returns:8005"}
    conf.write_text('evil"] 80x1 x x\n')
    assert prometheus_config(conf).returncode != 0


def test_compose_runs_prometheus_and_grafana_on_these_files():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    prometheus, grafana = compose["services"]["prometheus"], compose["services"]["grafana"]
    mounts = mounts_of(prometheus)
    script = prometheus["entrypoint"][-1]
    assert Path(mounts[script]) == Path("./deploy/prometheus/entrypoint.sh")
    assert Path(mounts["/etc/prometheus/rules"]) == Path("./deploy/prometheus/rules")
    assert Path(mounts[prometheus["environment"]["OMS_SERVICES_CONF"]]) == Path("./deploy/services.conf")
    mounts = mounts_of(grafana)
    assert Path(mounts["/etc/grafana/provisioning"]) == Path("./deploy/grafana/provisioning")
    provider = yaml.safe_load((PROVISIONING / "dashboards" / "oms.yml").read_text())["providers"][0]
    assert Path(mounts[provider["options"]["path"]]) == Path("./deploy/grafana/dashboards")
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert (DEPLOY / "grafana" / "dashboards" / Path(home).name).is_file()


def panels_of(dashboard: dict) -> list[dict]:
    return [p for p in dashboard["panels"] if p["type"] != "row"]


@pytest.mark.parametrize("path", DASHBOARDS, ids=[p.name for p in DASHBOARDS])
def test_dashboard_panels_query_the_provisioned_prometheus(path: Path):
    dashboard = json.loads(path.read_text())
    datasource = yaml.safe_load((PROVISIONING / "datasources" / "prometheus.yml").read_text())["datasources"][0]
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids)) and dashboard["uid"]
    cells = set()
    for panel in dashboard["panels"]:
        g = panel["gridPos"]
        assert g["x"] + g["w"] <= 24, panel["title"]
        mine = {(x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])}
        assert not cells & mine, f"{panel['title']} overlaps another panel"
        cells |= mine
    for panel in panels_of(dashboard):
        assert panel["datasource"]["uid"] == datasource["uid"], panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            check_expr(target["expr"], f"{path.name}: {panel['title']}")


def test_dashboard_covers_flow_latency_lag_outbox_dlq_and_errors():
    used = set()
    for path in DASHBOARDS:
        for panel in panels_of(json.loads(path.read_text())):
            for target in panel["targets"]:
                used |= {s.name for s in selectors(promql_parser.parse(target["expr"]))}
    assert {"oms_orders_placed_total", "oms_saga_status_changes_total",  # order flow
            "oms_saga_step_seconds_bucket",  # latency per saga step
            "oms_consumer_lag", "oms_outbox_oldest_unsent_age_seconds", "oms_outbox_unsent",
            "oms_dlq_messages_total", "oms_http_requests_total", "oms_saga_stuck"} <= used
