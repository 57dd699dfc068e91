"""``storecast sim ...``: synthetic data for trying storecast without a chain of one's own."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import numpy as np
import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from storecast.cli._app import INTERRUPTED, app, console, fail
from storecast.client import ApiRefused
from storecast.common.clock import Clock, SystemClock
from storecast.common.errors import ConfigError
from storecast.common.telemetry import hour_floor
from storecast.forecasting.synthetic import ChainConfig, generate_chain
from storecast.sim.telemetry import TelemetrySim, TelemetrySimConfig

if TYPE_CHECKING:
    from storecast.sim.sensors import SendTotals

sim_app = typer.Typer(
    help="Simulators: synthetic store history, store sensors and fleet telemetry.",
    no_args_is_help=True,
)
app.add_typer(sim_app, name="sim")


@sim_app.command("history")
def history(
    out: Annotated[Path, typer.Option("--out", help="CSV file to write.")],
    stores: Annotated[int, typer.Option(min=1, max=10_000, help="Number of stores.")] = 20,
    days: Annotated[int, typer.Option(min=1, max=3650, help="Days of hourly history.")] = 730,
    seed: Annotated[int, typer.Option(help="Random seed (same seed, same data).")] = 7,
    start: Annotated[str, typer.Option(help="First day (UTC), YYYY-MM-DD.")] = "2024-01-01",
    missing_rate: Annotated[
        float, typer.Option(min=0.0, max=0.5, help="Share of store-hours to drop.")
    ] = 0.0,
) -> None:
    """Write a synthetic chain's hourly history as CSV (store-hour schema plus oracle columns)."""
    try:
        np.datetime64(start, "D")
        if len(start) != 10:
            raise ValueError(f"--start must be a day, YYYY-MM-DD; got {start!r}")
        config = ChainConfig(
            stores=stores, days=days, seed=seed, start=start, missing_rate=missing_rate
        )
        chain = generate_chain(config)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    rows = chain.history.write_csv(out)
    console.print(f"wrote {rows:,} store-hours of {stores} stores over {days} days to {out}")


class Fault(StrEnum):
    """The faults ``sim telemetry`` can inject (``storecast.sim.telemetry.FAULTS``)."""

    BAD_MODEL = "bad-model"
    BROKEN_STORE = "broken-store"
    BAD_AGENT = "bad-agent"


def _end_hour(end: str | None) -> datetime:
    """``--end`` as an aware UTC hour; the current hour when not given."""
    if end is None:
        return hour_floor(SystemClock().now())
    try:
        return datetime.strptime(end, "%Y-%m-%dT%H").replace(tzinfo=UTC)
    except ValueError as exc:
        raise typer.BadParameter(
            f"expected an hour as YYYY-MM-DDTHH (e.g. 2026-03-01T00), got {end!r}",
            param_hint="--end",
        ) from exc


@sim_app.command("telemetry")
def telemetry(
    devices: Annotated[
        int, typer.Option(min=1, max=100_000, help="Devices to simulate (one per store).")
    ] = 10,
    days: Annotated[int, typer.Option(min=1, max=3650, help="Days of telemetry.")] = 7,
    seed: Annotated[int, typer.Option(help="Random seed (same seed, same events).")] = 7,
    fault: Annotated[Fault | None, typer.Option(help="A fault in the last hours.")] = None,
    fault_hours: Annotated[int, typer.Option(min=1, help="Hours the fault lasts.")] = 24,
    end: Annotated[
        str | None,
        typer.Option(help="End of the span (exclusive), YYYY-MM-DDTHH UTC [default: this hour]."),
    ] = None,
    out: Annotated[Path | None, typer.Option("--out", help="JSONL file to write.")] = None,
    url: Annotated[str | None, typer.Option("--url", help="Cloud URL to post to.")] = None,
    token: Annotated[
        str | None, typer.Option("--token", help="Admin token (enrols the devices).")
    ] = None,
    tokens: Annotated[
        Path | None,
        typer.Option("--tokens", help="Device token file: reused, and updated on enrolment."),
    ] = None,
    batch_size: Annotated[int, typer.Option(min=1, max=1000, help="Events per request.")] = 500,
) -> None:
    """Simulate a fleet's telemetry: write it as JSONL (--out) or post it (--url, --token)."""
    if (out is None) == (url is None):
        raise typer.BadParameter("give exactly one of --out FILE or --url URL", param_hint="--out")
    if url is not None and not token:
        raise typer.BadParameter("--url needs --token ADMIN_TOKEN", param_hint="--token")
    try:
        config = TelemetrySimConfig(
            end=_end_hour(end),
            devices=devices,
            days=days,
            seed=seed,
            fault=fault.value if fault is not None else None,
            fault_hours=fault_hours,
        )
    except ConfigError as exc:
        raise typer.BadParameter(str(exc)) from exc
    sim = TelemetrySim(config)
    span = f"{config.start:%Y-%m-%dT%H}..{config.end:%Y-%m-%dT%H} UTC"
    if out is not None:
        _write(sim, out, span)
    elif url is not None and token is not None:  # checked above
        _post(sim, url, token, tokens, batch_size)


def _bar() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    )


def _write(sim: TelemetrySim, out: Path, span: str) -> None:
    from storecast.sim.sender import write_jsonl

    with _bar() as bar:
        task = bar.add_task("generating", total=len(sim.devices))

        def events() -> Iterator[dict[str, object]]:
            for _, stream in sim.streams():
                yield from stream
                bar.advance(task)

        n = write_jsonl(events(), out)
    console.print(
        f"wrote {n:,} events of {len(sim.devices)} devices ({span}) to {out}", highlight=False
    )


def _post(sim: TelemetrySim, url: str, token: str, tokens: Path | None, batch_size: int) -> None:
    from storecast.sim.sender import load_tokens, post, save_tokens

    known = load_tokens(tokens) if tokens is not None else {}
    try:
        with _bar() as bar:
            task = bar.add_task("posting", total=len(sim.devices))

            def progress(devices_done: int, events_sent: int) -> None:
                bar.update(task, completed=devices_done, description=f"{events_sent:,} events")

            totals = post(url, token, sim, batch_size=batch_size, tokens=known, progress=progress)
    finally:
        if tokens is not None:
            save_tokens(known, tokens)
    console.print(
        f"sent {totals.sent:,} events of {totals.devices} devices: {totals.accepted:,} accepted, "
        f"{totals.duplicates:,} duplicates, {totals.rejected:,} rejected",
        highlight=False,
    )
    for rejection in totals.rejection_samples:
        console.print(f"  rejected: {rejection}", highlight=False)
    if totals.interrupted:
        raise fail("interrupted", INTERRUPTED)


def _start_hour(start: str | None, clock: Clock) -> datetime:
    """``--start`` as an aware UTC hour; 14 days before the clock's hour when not given."""
    if start is None:
        return hour_floor(clock.now() - timedelta(days=14))
    try:
        moment = datetime.fromisoformat(start)
    except ValueError as exc:
        raise typer.BadParameter(
            f"expected an ISO hour such as 2026-03-01T14 or 2026-03-01T14:00:00Z, got {start!r}",
            param_hint="--start",
        ) from exc
    moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    if moment != hour_floor(moment):
        raise typer.BadParameter(f"{start!r} is not the start of an hour", param_hint="--start")
    return moment


@sim_app.command("sensors")
def sensors(
    device: Annotated[
        str, typer.Option("--device", help="Agent base URL (posts to /v1/readings).")
    ],
    store_id: Annotated[
        str, typer.Option("--store-id", help="Synthetic store to stream.")
    ] = "S001",
    speed: Annotated[
        float,
        typer.Option(min=0.0, help="Simulated seconds per wall second (0: as fast as possible)."),
    ] = 3600.0,
    seed: Annotated[int, typer.Option(help="Random seed of the synthetic chain.")] = 7,
    stores: Annotated[
        int, typer.Option(min=1, max=10_000, help="Stores in the synthetic chain.")
    ] = 20,
    start: Annotated[
        str | None,
        typer.Option(help="First simulated hour, ISO (UTC) [default: 14 days ago, on the hour]."),
    ] = None,
    backfill_hours: Annotated[
        int, typer.Option(min=0, help="Hours sent as fast as possible before pacing starts.")
    ] = 0,
    hours: Annotated[
        int | None,
        typer.Option(
            min=1, help="Stop after this many simulated hours [default: a year, or Ctrl-C]."
        ),
    ] = None,
    missing_rate: Annotated[
        float, typer.Option(min=0.0, max=0.5, help="Share of store-hours without sales.")
    ] = 0.0,
    token: Annotated[str | None, typer.Option("--token", help="Bearer token, if asked.")] = None,
) -> None:
    """Stream a synthetic store's sensor readings to an agent, a reading every 5 simulated
    minutes, with simulated (event) timestamps."""
    from storecast.forecasting.synthetic import store_id_for
    from storecast.sim.sensors import (
        ReadingsPoster,
        SendTotals,
        SensorStream,
        send_readings,
        sensor_chain,
    )

    clock = SystemClock()
    first = _start_hour(start, clock)
    if store_id not in {store_id_for(i) for i in range(stores)}:
        raise typer.BadParameter(
            f"no store {store_id!r} in a chain of {stores} stores "
            f"({store_id_for(0)}..{store_id_for(stores - 1)})",
            param_hint="--store-id",
        )
    chain = sensor_chain(store_id, first, hours, seed=seed, missing_rate=missing_rate)
    stream = SensorStream(chain, store_id, first, hours)
    paced_from = first + timedelta(hours=backfill_hours)
    poster = ReadingsPoster(device, token)
    totals = SendTotals()
    progress_bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.fields[readings]:,} readings"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    )
    try:
        with progress_bar as bar:
            task = bar.add_task("starting", total=stream.hours, readings=0)

            def progress(totals: SendTotals) -> None:
                reached = totals.reached or first
                bar.update(
                    task,
                    completed=(reached - first) / timedelta(hours=1),
                    description=f"simulated {reached:%Y-%m-%d %H:%M} UTC",
                    readings=totals.readings,
                )

            send_readings(
                stream.steps(),
                poster.post,
                speed=speed,
                clock=clock,
                paced_from=paced_from,
                progress=progress,
                totals=totals,
            )
    except (ApiRefused, ConfigError):
        if totals.requests:
            _sensor_summary(totals, store_id, first)
        raise
    finally:
        poster.close()
    _sensor_summary(totals, store_id, first)
    if totals.interrupted:
        raise fail("interrupted", INTERRUPTED)


def _sensor_summary(totals: SendTotals, store_id: str, first: datetime) -> None:
    console.print(
        f"sent {totals.readings:,} readings of {store_id} in {totals.requests:,} requests: "
        f"{totals.accepted:,} accepted, {totals.duplicates:,} duplicates",
        highlight=False,
    )
    if totals.reached is not None:
        console.print(
            f"simulated {first:%Y-%m-%dT%H:%M} .. {totals.reached:%Y-%m-%dT%H:%M} UTC",
            highlight=False,
        )
