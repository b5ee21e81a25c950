"""`python -m bench`: runs the benchmarks (all, or the one named by --only) against the dev
infrastructure (`deploy/local/infra.sh dev start`, or `make up`), each with processes of its own.
The benchmarks' services use topics of their own (bench.oms.*), so the dev services of `make up` never
see their orders; `make bench` still stops the dev services first, so that their CPU is not in the figures.

Exit status: 0 when the measurements ran (whether or not a goal is met), 1 when a benchmark failed,
2 when the infrastructure does not answer or the options are wrong, 130 when interrupted.
"""

import argparse
import importlib
import signal
import sys
import traceback
from types import ModuleType

from bench.env import ROOT, Context, Unmeasurable, infra_addresses, infra_problems, say, write_results

# name -> module of this package with NAME, DESCRIPTION, run(ctx) and optionally add_arguments(parser)
# and check_arguments(args, parser).
# Without --only they run in this order.
BENCHMARKS = {
    "capture": "bench.capture",
    "e2e": "bench.e2e",
}


def _load(name: str) -> ModuleType:
    return importlib.import_module(BENCHMARKS[name])


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    modules = {name: _load(name) for name in BENCHMARKS}
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="OMS benchmarks against the dev infrastructure (start it with `deploy/local/infra.sh dev "
                    "start`). Benchmarks: "
                    + "; ".join(f"{n}: {m.DESCRIPTION}" for n, m in modules.items()),
    )
    parser.add_argument("--duration", type=float, default=20, help="capture: seconds of measured load per endpoint")
    parser.add_argument("--warmup", type=float, default=3, help="capture: seconds of load before each measurement")
    parser.add_argument("--connections", type=int, default=32, help="capture: concurrent connections (fixed)")
    parser.add_argument("--threads", type=int, default=1, help="capture: wrk threads")
    parser.add_argument("--only", choices=sorted(BENCHMARKS), help="run only this benchmark")
    for module in modules.values():
        if hasattr(module, "add_arguments"):
            module.add_arguments(parser)
    args = parser.parse_args(argv)
    for module in modules.values():
        if hasattr(module, "check_arguments"):
            module.check_arguments(args, parser)
    if args.duration < 1 or args.warmup < 0 or args.connections < 1 or args.threads < 1:
        parser.error("--duration must be >= 1, --warmup >= 0, --connections and --threads >= 1")
    if args.connections < args.threads:
        parser.error("--connections must be at least --threads")
    return args


def _terminate(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # Both stop the run the same way (its processes are stopped on the way out), also when the shell
    # that started the bench in the background had SIGINT ignored.
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGINT, _terminate)
    kafka, pg_admin = infra_addresses()
    problems = infra_problems(kafka, pg_admin)
    if problems:
        for p in problems:
            print(f"bench: {p}", file=sys.stderr)
        print("bench: the dev infrastructure is not up. Start it with `deploy/local/infra.sh dev start` "
              "(Kafka and PostgreSQL only; OMS_ZIPKIN=0 skips Zipkin) or `make up` (also the dev services, "
              "which the e2e benchmark wants stopped), then rerun.", file=sys.stderr)
        return 2
    ctx = Context(args=args, kafka_bootstrap=kafka, pg_admin_dsn=pg_admin)
    names = [args.only] if args.only else list(BENCHMARKS)
    failed = False
    for name in names:
        say(f"benchmark {name} (run {ctx.stamp}, nonce {ctx.nonce})")
        try:
            figures = _load(name).run(ctx)
        except KeyboardInterrupt:
            print("bench: interrupted; its processes are stopped", file=sys.stderr)
            return 130
        except Unmeasurable as exc:
            print(f"bench: benchmark {name} cannot run here: {exc}", file=sys.stderr)
            failed = True
            continue
        except Exception:  # noqa: BLE001 - report it and go on with the next benchmark
            traceback.print_exc()
            print(f"bench: benchmark {name} failed", file=sys.stderr)
            failed = True
            continue
        path = write_results(ctx, name, figures)
        say(f"figures written to {path.relative_to(ROOT)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
