"""The application around the agent, the same on an ESP32 and on the host: the rollback gate first,
then the ML task and the OTA task as separate asyncio tasks (the C firmware's FreeRTOS tasks). The ML
task never waits on the network; the OTA task yields whenever it waits on it.
"""

import asyncio
import time

from otaml import agent as agentmod

try:
    from otaml.ml import ML  # noqa: F401 - for the type checker
except ImportError:
    pass

TAG = "otaml_app"


class MLRunner:
    """The ML task: one inference every interval_ms on the next sensor reading."""

    def __init__(self, port, ml, sensor, interval_ms):
        self.port = port
        self.ml: "ML | None" = ml
        self.sensor = sensor  # () -> list of floats in the card's feature order, or None
        self.interval_ms = interval_ms
        self.stopped = False

    def apply_config(self, cfg):
        """Desired configuration, taken at the next inference (called by the agent)."""
        interval = cfg.get("ml_interval_ms")
        if interval:
            self.interval_ms = interval
        if self.ml is not None:
            self.ml.alert_threshold = cfg.get("alert_threshold", -1)
        self.port.log("I", TAG, "config revision %d: ML every %d ms, alert threshold %d%%"
                      % (cfg.revision, self.interval_ms, cfg.get("alert_threshold", -1)))
        return True

    async def run(self):
        while not self.stopped:
            sample = self.sensor()
            if sample is not None and self.ml is not None:
                self.ml.step(sample)
            await asyncio.sleep_ms(self.interval_ms)


async def run(port, settings, runner=None, polls=0, interval_ms=0):
    """Boot gate, then the tasks. polls > 0 stops after that many polls (tests); interval_ms > 0
    overrides the server's poll interval. Returns after the last poll (a reboot raises out of here)."""
    ota = agentmod.Agent(port, settings)
    await ota.boot()
    ml_task = None
    if runner is not None and runner.ml is not None and runner.ml.loaded:
        ml_task = asyncio.create_task(runner.run())
    i = 0
    try:
        while polls <= 0 or i < polls:
            await ota.poll()
            i += 1
            if polls <= 0 or i < polls:
                delay = interval_ms if interval_ms > 0 else ota.next_delay_ms()
                await asyncio.sleep_ms(delay)
    finally:
        if ml_task is not None and runner is not None:
            runner.stopped = True
            ml_task.cancel()
    return ota


def ticks_us():
    return time.ticks_us()
