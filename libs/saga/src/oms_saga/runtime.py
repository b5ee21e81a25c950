"""The platform runtime of a service that runs sagas: the same runtime plus the saga's deadline
ticker, started once the pool exists and stopped before it closes."""

from typing import Any, Protocol

from oms_platform.runtime import ServiceRuntime
from oms_platform.settings import ServiceSettings
from oms_saga.runner import DeadlineTicker, SagaRunner


class TickerSettings(Protocol):
    tick_interval_seconds: float
    tick_batch_size: int


class SagaRuntime(ServiceRuntime):
    def __init__(self, settings: ServiceSettings, runner: SagaRunner, **runtime: Any):
        super().__init__(settings, **runtime)
        ticks: TickerSettings = settings  # type: ignore[assignment]  # a saga service's settings have both
        self.ticker = DeadlineTicker(runner, self.outbox, lambda: self.pool, interval=ticks.tick_interval_seconds,
                                     batch_size=ticks.tick_batch_size)

    async def start(self) -> None:
        await super().start()
        self.ticker.start()

    async def stop(self) -> None:
        await self.ticker.stop()
        await super().stop()
