"""The e2e bench's cost curve: its points from a run's phases, the printed ratios, its plan option,
and the Kafka broker it measures (the one serving the bootstrap address, whatever the profile)."""

import argparse

import pytest

from bench.e2e import plan as plan_module
from bench.e2e.curve import points, print_curve


def _phase(rate: float, p50: float, p99: float, per_order: dict[str, float], machine: float) -> dict:
    return {"rate": rate, "confirmed_per_s": rate, "to_confirmed_ms": {"p50": p50, "p99": p99},
            "cpu_ms_per_order": per_order, "cpu_accounted_ms_per_order": sum(per_order.values()),
            "machine_busy_ms_per_order": machine}


def _figures(max_rate: float, cpu_at_max: float) -> dict:
    def per(services: float) -> dict[str, float]:
        return {"order-capture": services / 2, "orchestrator": services / 2, "kafka": 1.0,
                "postgres_backends": 0.5, "postgres_aux": 0.1, "bench_client": 0.4}
    return {"max": _phase(max_rate, 900, 1500, per(cpu_at_max), 8.0),
            "latency": _phase(max_rate / 2, 200, 400, per(cpu_at_max * 2), 12.0),
            "rates": [_phase(100.0, 60, 150, per(cpu_at_max * 3), 20.0), _phase(10.0, 40, 90, per(20.0), 150.0)]}


def test_points_are_every_phase_lowest_rate_first_without_the_load_generator():
    rows = points(_figures(400.0, 2.0))
    assert [r["phase"] for r in rows] == ["10/s", "100/s", "200/s", "max"]
    top = rows[-1]
    assert top["rate"] == 400.0 and top["p99_ms"] == 1500
    assert top["services_ms"] == 2.0 and top["kafka_ms"] == 1.0 and top["postgres_ms"] == 0.6
    assert top["accounted_ms"] == pytest.approx(3.6)  # services + Kafka + PostgreSQL, not bench_client
    assert top["machine_ms"] == 8.0


def test_the_curve_prints_the_flatness_and_the_raw_baseline_ratios(capsys):
    figures = {**_figures(400.0, 2.0), "raw": _figures(800.0, 1.0)}
    print_curve(figures)
    out = capsys.readouterr().out
    assert "at 100/s is 2.11x the CPU per order at the maximum" in out  # (6 + 1 + 0.6) / (2 + 1 + 0.6)
    assert "OMS / raw pipeline: throughput 0.50x" in out
    assert out.count("  raw ") == 4


def test_the_curve_rates_option():
    parser = argparse.ArgumentParser()
    plan_module.add_arguments(parser)
    plan = plan_module.Plan.from_args(parser.parse_args(["--e2e-curve", "10,100"]))
    assert plan.curve == [10.0, 100.0] and plan.raw
    plan = plan_module.Plan.from_args(parser.parse_args(["--e2e-curve", "", "--e2e-no-raw"]))
    assert plan.curve == [] and not plan.raw
    with pytest.raises(ValueError, match="--e2e-curve"):
        plan_module.Plan.from_args(parser.parse_args(["--e2e-curve", "ten"]))


def test_fixed_rate_phases_start_vacuumed_unless_told_not_to(monkeypatch):
    import asyncio

    from bench.e2e import load as load_module

    parser = argparse.ArgumentParser()
    plan_module.add_arguments(parser)
    assert plan_module.Plan.from_args(parser.parse_args([])).vacuum
    assert not plan_module.Plan.from_args(parser.parse_args(["--e2e-no-vacuum"])).vacuum
    # The phase's first step is the VACUUM (ANALYZE) of every bench database (the one the phase uses).
    ran: list[str] = []

    def in_each(ctx, databases, statement):
        ran.append(f"{statement} {','.join(databases)}")
        raise RuntimeError("stop here")

    monkeypatch.setattr("bench.e2e.pgstats._in_each", in_each)
    probe = load_module.Load.__new__(load_module.Load)
    probe.plan, probe.ctx, probe.databases = plan_module.Plan.from_args(parser.parse_args([])), None, ["bench_x"]
    with pytest.raises(RuntimeError):
        asyncio.run(probe.rate_phase(None, 10.0))
    assert ran == ["VACUUM (ANALYZE) bench_x"]
