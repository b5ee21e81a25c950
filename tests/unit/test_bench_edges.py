"""The e2e bench's --e2e-edges: the services it starts, their settings, and the CPU accounting that
counts the edge services with the OMS's and the mail sink apart from it."""

import argparse

import pytest

from bench.e2e import plan as plan_module
from bench.e2e.curve import points, print_curve
from bench.e2e.edges import MAIL_SINK, edge_env


def _plan(*argv: str) -> plan_module.Plan:
    parser = argparse.ArgumentParser()
    plan_module.add_arguments(parser)
    return plan_module.Plan.from_args(parser.parse_args(list(argv)))


def test_the_default_run_starts_the_saga_only():
    plan = _plan()
    assert not plan.edges
    assert plan.services == ("order-capture", "orchestrator", "inventory", "fulfilment")


def test_edges_add_tracking_notification_and_returns_which_may_have_replicas_and_settings():
    plan = _plan("--e2e-edges", "--e2e-replicas", "orchestrator=2", "--e2e-replicas", "notification=2",
                 "--e2e-env", "returns:TICK_INTERVAL_SECONDS=1", "--e2e-profile", "tracking")
    assert plan.services[4:] == ("tracking", "notification", "returns")
    assert plan.replicas == {"orchestrator": 2, "notification": 2}
    assert plan.env_by_service["returns"] == {"TICK_INTERVAL_SECONDS": "1"} and plan.profile == "tracking"


@pytest.mark.parametrize("argv", [["--e2e-replicas", "tracking=2"], ["--e2e-profile", "returns"],
                                  ["--e2e-edges", "--e2e-replicas", "order-capture=2"]])
def test_edge_options_need_the_edges_and_order_capture_stays_one_process(argv):
    with pytest.raises(ValueError, match="--e2e-replicas|--e2e-edges"):
        _plan(*argv)


def test_without_the_edges_an_env_setting_for_an_edge_service_is_refused():
    with pytest.raises(ValueError, match="--e2e-env"):
        _plan("--e2e-env", "tracking:X=1")


def test_the_edge_services_get_their_secrets_and_notification_the_mail_sink():
    assert edge_env("orchestrator", 2525, "link", "carrier") == {}
    assert edge_env("tracking", None, "link", "carrier") == {"CARRIER_WEBHOOK_SECRET": "carrier",
                                                            "TRACKING_LINK_SECRET": "link"}
    assert edge_env("notification", 2525, "link", "carrier") == {
        "SMTP_HOST": "127.0.0.1", "SMTP_PORT": "2525", "TRACKING_LINK_SECRET": "link"}
    assert edge_env("returns", 2525, "link", "carrier") == {}


def test_the_edge_services_count_as_services_and_the_mail_sink_as_outside_the_system(capsys):
    per = {"order-capture": 1.0, "orchestrator": 1.0, "tracking": 0.5, "notification": 0.25, "returns": 0.25,
           MAIL_SINK: 0.2, "kafka": 1.0, "postgres_backends": 0.5, "postgres_aux": 0.1, "bench_client": 0.4}
    phase = {"rate": 20.0, "to_confirmed_ms": {"p50": 50, "p99": 90}, "cpu_ms_per_order": per,
             "cpu_accounted_ms_per_order": sum(per.values()), "machine_busy_ms_per_order": 9.0}
    (row,) = points({"latency": phase})
    assert row["services_ms"] == 3.0
    assert row["services"] == ["order-capture", "orchestrator", "tracking", "notification", "returns"]
    assert row["accounted_ms"] == pytest.approx(4.6)  # services + Kafka + PostgreSQL
    print_curve({"latency": phase})
    assert "services (OMS): order-capture, orchestrator, tracking, notification, returns" in capsys.readouterr().out
