"""Simulators that stand in for a real chain: its stores' devices and their telemetry."""

from storecast.sim.telemetry import (
    FAULTS,
    FleetPlan,
    SimDevice,
    TelemetrySim,
    TelemetrySimConfig,
    generate,
)

__all__ = ["FAULTS", "FleetPlan", "SimDevice", "TelemetrySim", "TelemetrySimConfig", "generate"]
