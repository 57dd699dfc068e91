"""The end-to-end demo: what ``make demo`` shows a new user, on one machine.

1. the cloud (registry + analytics in one gunicorn process): keys, database, tokens
2. the release pipeline trains ``demand-lstm`` v1 (quick) and evaluates it against the
   seasonal-naive baselines and the oracle
3. ... packages, publishes and deploys it to every store (``production`` = v1)
4. four edge agents (one process per store, onnxruntime) and a sensor simulator per store
   at accelerated time; each agent fetches v1 through TUF, verifies it and loads it
5. the devices forecast live from their own readings; telemetry flows to the cloud
6. the pipeline again, on more history: v2 passes the quality gate against v1, is
   published and goes out as an A/B canary to half the stores, whose devices update
   themselves; the readout compares the arms on the simulated sales
7. the analytics: per-store accuracy, performance by version and arm, fleet KPIs, the
   usage log, and the dashboard's URL with a viewer login

Every process the demo starts is stopped when it ends, also on Ctrl-C or a failure, and a
failure names the step. ``quick`` is the same story with smaller budgets (for CI).
"""

from storecast.demo._story import DemoPlan, run_demo

__all__ = ["DemoPlan", "run_demo"]
