"""The docs' tutorials, run the way a reader runs them (so the docs can't rot).

tests/test_docs_commands.py parses every ``storecast`` command of README.md and docs/*.md
and runs the ones that need nothing but a folder. This module runs the others: the blocks
of registry.md, rollouts.md, bundles.md, analytics.md, edge.md and operations.md, and the
README's release and training blocks, line by line in document order, each tutorial in a
fresh folder, every ``storecast`` line as a real process (``sys.executable -m storecast``):

- ``export NAME=value ...`` sets the environment of the lines that follow;
- a server (``registry serve``, ``cloud serve``; ``&`` or not) runs in the background
  (``storecast._process.server_process``) until the tutorial ends; so does ``edge run``
  (``tests.edge._live.start_agent``: torch unimportable, as on a device, and ``--port 0``);
  ``sim sensors``, which streams for minutes, runs until its backfill is in the agent and is
  then stopped as with Ctrl-C (exit 130);
- ``curl`` and ``open`` lines are sent with httpx and must answer 200;
- a placeholder (``<admin token>``, ``$DEVICE_TOKEN``, ...) takes the value an earlier line
  of the tutorial printed, or the exported variable; the few example values that cannot
  work on a test machine (port 8080, example hosts, ``/srv/...``, deployment 7, versions 3
  and 4, the full model's 170 s training budget) are rewritten by ``REWRITES`` and
  ``URLS``, each with its reason. Nothing else is changed.

Every other command must exit 0. What a tutorial takes for granted but does not show (a
trained ``lstm_v1.pt``, a model published before the edge quick start, a second version
before a rollback) is done beside it and marked *premise*. After each block the test checks
an effect through the API (not the printed text). ``test_every_documented_command_is_run``
fails when a documented command is run neither here, nor by test_docs_commands, nor is in
``NOT_RUN_HERE`` with its reason.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from storecast._process import launch, server_process, stop
from storecast.bundle import verify_bundle
from storecast.cli._app import INTERRUPTED
from storecast.client import CloudClient
from storecast.forecasting.synthetic import generate_chain
from storecast.registry.setup import init_registry
from tests.conftest import TINY_CHAIN
from tests.edge._bundles import rebuild
from tests.edge._live import AgentProcess, active_version, start_agent, stop_agent, wait_until
from tests.registry.conftest import registry_config, serve_registry
from tests.test_docs_commands import (
    DOC_COMMANDS,
    PLACEHOLDER,
    ROOT,
    is_executed,
    leaf_for,
    parse_line,
    shell_blocks,
)

pytestmark = pytest.mark.slow

MODEL = "demand-lstm"
TOKEN = re.compile(r"sct_[A-Za-z0-9_-]{20,}")
SERVERS = {("registry", "serve"), ("cloud", "serve"), ("analytics", "serve")}


@dataclass(frozen=True)
class Rewrite:
    """In ``doc``'s commands, the word ``old`` right after ``after`` becomes ``new``."""

    doc: str
    after: str
    old: str
    new: str  # words; "{name}" is a value learnt earlier in the tutorial; "" drops the word
    why: str


REWRITES = (
    Rewrite("*", "--port", "8080", "0",
            "8080 may be taken: any free port; the server prints its URL (URLS follow it)"),
    Rewrite("docs/operations.md", "export",
            "STORECAST_DATABASE_URL=postgresql://storecast@db.internal/storecast", "",
            "no db.internal here: the home's SQLite database (tests/registry run PostgreSQL)"),
    Rewrite("docs/operations.md", "--host", "0.0.0.0", "127.0.0.1",
            "tests listen on loopback only"),
    Rewrite("docs/operations.md", "--workers", "4", "2",
            "4 workers is the runbook's 2 x cores for a 2-core machine; 2 starts faster here"),
    Rewrite("docs/operations.md", "--version", "3", "1",
            "the runbook's chain is at its 3rd release; this cloud holds v1 and v2"),
    Rewrite("docs/operations.md", "--version", "4", "2", "the runbook's 4th release: v2 here"),
    Rewrite("docs/operations.md", "--candidate-version", "4", "2",
            "the runbook's 4th release: v2 here"),
    Rewrite("docs/rollouts.md", "status", "7", "{deployment}",
            "an example id: the canary the tutorial's `deploy --canary` created"),
    Rewrite("docs/rollouts.md", "pause", "7", "{deployment}",
            "an example id: the canary the tutorial's `deploy --canary` created"),
    Rewrite("README.md", "my_history.csv", "--out", "--max-seconds 1 --out",
            "the full model's budget is up to 170 s: one epoch shows the command works"),
)  # fmt: skip

# URL prefixes in any word, and the value that replaces them: the server the tutorial runs.
URLS = (
    ("http://127.0.0.1:8080", "cloud", "the cloud started with --port 0"),
    ("https://registry.example.com", "cloud", "the runbook's registry: the cloud it started"),
    ("https://analytics.example.com", "cloud", "the runbook's analytics: the same cloud"),
    ("http://127.0.0.1:8700", "agent", "the agent, started with --port 0"),
)

# Documented commands this module does not run, and why. Keep it short.
NOT_RUN_HERE = {
    "storecast demo": "the full demo takes minutes; --quick runs the same story (test_demo.py)",
    "storecast demo --quick": "run by tests/test_demo.py (its --home in a temporary folder)",
    "storecast demo --keep-running": "keeps everything up until Ctrl-C, by design",
    "storecast demo --quick --home demo-home": "run by tests/test_demo.py, the home in tmp_path",
}


@dataclass(frozen=True)
class Tutorial:
    """The command blocks of a doc (or only the one holding a line that starts ``block_with``)."""

    doc: str
    block_with: str | None = None

    def lines(self) -> list[tuple[str, str]]:
        blocks = [
            block
            for block in shell_blocks(ROOT / self.doc)
            if any(parse_line(source, line) is not None for source, line in block)
            and (
                self.block_with is None
                or any(text.startswith(self.block_with) for _, text in block)
            )
        ]
        assert blocks, f"{self.doc} has no command block (with {self.block_with!r})"
        return [line for block in blocks for line in block]


REGISTRY = Tutorial("docs/registry.md")
ROLLOUTS = Tutorial("docs/rollouts.md")
BUNDLES = Tutorial("docs/bundles.md")
ANALYTICS = Tutorial("docs/analytics.md")
EDGE = Tutorial("docs/edge.md")
OPERATIONS = Tutorial("docs/operations.md")
README_RELEASE = Tutorial("README.md", "storecast pipeline run")
README_OWN_DATA = Tutorial("README.md", "storecast train --data my_history.csv")
README_SYNTHETIC = Tutorial("README.md", "storecast train --data history.csv")
TUTORIALS = (
    REGISTRY, ROLLOUTS, BUNDLES, ANALYTICS, EDGE, OPERATIONS,
    README_RELEASE, README_OWN_DATA, README_SYNTHETIC,
)  # fmt: skip


# -- running a tutorial ----------------------------------------------------------------------


@dataclass
class Walk:
    """A reader's shell: a folder, its environment, what ran in the background, what it learnt."""

    folder: Path
    env: pytest.MonkeyPatch
    background: ExitStack
    values: dict[str, str] = field(default_factory=dict)  # "<admin token>", "cloud", ...
    response: httpx.Response | None = None  # of the last curl
    agent: AgentProcess | None = None
    _agent_args: tuple[Path, tuple[str, ...]] | None = None
    _cursors: list[Cursor] = field(default_factory=list)

    def tutorial(self, tutorial: Tutorial) -> Cursor:
        cursor = Cursor(self, tutorial.doc, tutorial.lines())
        self._cursors.append(cursor)
        return cursor

    def api(self, token_placeholder: str) -> CloudClient:
        return CloudClient(self.values["cloud"], self.values[token_placeholder])

    def line(self, doc: str, source: str, line: str) -> None:
        """Run one shell line of ``doc`` as a reader would."""
        filled = PLACEHOLDER.sub(lambda m: self._value(source, m.group(0)), line.removeprefix("$ "))
        words = self._rewrite(doc, shlex.split(filled, comments=True))
        if not words:
            return
        verb, args = words[0], words[1:]
        if verb == "export":
            for word in args:
                name, _, value = word.partition("=")
                self.env.setenv(name, value)
        elif verb == "storecast":
            self._storecast(source, args)
        elif verb == "curl":
            self._curl(source, args)
        elif verb == "open":
            opened = httpx.get(args[0], timeout=30, follow_redirects=True)
            assert opened.status_code == 200, f"{source}: {args[0]} answered {opened.status_code}"
        else:
            raise AssertionError(f"{source}: the walkthrough cannot run {line!r}")

    def restart_agent(self) -> None:
        """Stop the agent (SIGINT, exit 0) and start it again: it polls its assignment at once."""
        assert self._agent_args is not None and self.agent is not None
        output = self.agent.output()[-3000:]
        assert self._stop_agent() == 0, output
        home, extra = self._agent_args
        self.agent = start_agent(home, *extra)
        self.values["agent"] = self.agent.url

    def active_version(self) -> int | None:
        """The version the agent runs now (None: no model yet)."""
        assert self.agent is not None, "no agent is running"
        return active_version(self.agent)

    def finish(self) -> None:
        for cursor in self._cursors:
            assert cursor.done == len(cursor.lines), f"{cursor.doc}: lines left unrun"
        if self.agent is not None:
            output = self.agent.output()[-3000:]
            assert self._stop_agent() == 0, output

    def _stop_agent(self) -> int | None:
        agent, self.agent = self.agent, None
        return None if agent is None else stop_agent(agent)

    def _value(self, source: str, placeholder: str) -> str:
        """An exported variable, or what an earlier line printed (``_learn``)."""
        if placeholder.startswith("$"):
            name = placeholder.strip("${}")
            value = os.environ.get(name) or self.values.get(f"${name}")
        else:
            value = self.values.get(placeholder)
        assert value, f"{source}: nothing earlier in the tutorial gives {placeholder}"
        return value

    def _rewrite(self, doc: str, words: list[str]) -> list[str]:
        out: list[str] = []
        for n, word in enumerate(words):
            before = words[n - 1] if n else ""
            rule = next(
                (r for r in REWRITES if r.doc in ("*", doc) and (r.after, r.old) == (before, word)),
                None,
            )
            if rule is not None:
                out.extend(rule.new.format_map(self.values).split())
                continue
            for old, key, _ in URLS:
                if old in word:
                    word = word.replace(old, self.values[key])
            if word.startswith("/"):  # /srv/storecast, /var/lib/storecast-edge
                word = str(self.folder / word.lstrip("/"))
            out.append(word)
        return out

    def _storecast(self, source: str, argv: list[str]) -> None:
        if argv[-1:] == ["&"]:
            argv = argv[:-1]
        _, named = leaf_for(argv)
        path = tuple(named)
        if path in SERVERS:
            self.values["cloud"] = self.background.enter_context(server_process(*argv))
        elif path == ("edge", "run"):
            at = argv.index("--home")
            home, extra = Path(argv[at + 1]), (*argv[2:at], *argv[at + 2 :])
            self._agent_args = (home, extra)
            self.agent = start_agent(home, *extra)
            self.values["agent"] = self.agent.url
            self.background.callback(self._stop_agent)
        elif path == ("sim", "sensors"):
            self._stream_sensors(source, argv)
        else:
            done = subprocess.run(
                [sys.executable, "-m", "storecast", *argv],
                capture_output=True,
                text=True,
                timeout=300,
            )
            assert done.returncode == 0, (
                f"{source}: storecast {shlex.join(argv)} exited {done.returncode}\n"
                f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
            )
            self._learn(path, argv, done.stdout)

    def _learn(self, path: tuple[str, ...], argv: list[str], out: str) -> None:
        """Keep what a command printed that later lines of a tutorial stand in for."""
        if path == ("registry", "init"):
            self.values["<admin token>"] = _token(out)
        elif path == ("tokens", "create"):
            self.values[f"<{argv[argv.index('--role') + 1]} token>"] = _token(out)
        elif path == ("devices", "enrol"):
            self.values["<device token>"] = self.values["$DEVICE_TOKEN"] = _token(out)
        elif path == ("edge", "init"):
            self.values["<local admin token>"] = out.split()[-1]
        elif path == ("deploy",):
            found = re.search(r"^deployment (\d+):", out, re.MULTILINE)
            assert found is not None, out
            self.values["deployment"] = found.group(1)

    def _stream_sensors(self, source: str, argv: list[str]) -> None:
        """Stream until the whole backfill is stored, then stop it as Ctrl-C does (exit 130).

        Left alone it paces an hour a second for 144 s more, then exits 2 (edge.md says so).
        """
        device = argv[argv.index("--device") + 1]
        backfill = int(argv[argv.index("--backfill-hours") + 1])
        with tempfile.TemporaryFile("w+") as log:
            proc = launch(argv, log, pipe_stdout=False)

            def stored() -> bool:
                if proc.poll() is not None:
                    log.seek(0)
                    raise AssertionError(f"{source}: exited {proc.returncode}\n{log.read()}")
                status = httpx.get(f"{device}/v1/status", timeout=10).json()
                return int(status["history_hours"]) >= backfill

            try:
                wait_until(stored, 120, f"{source}: the backfill")
            finally:
                code = stop(proc)
            log.seek(0)
            assert code == INTERRUPTED, f"{source}: exited {code}\n{log.read()}"

    def _curl(self, source: str, args: list[str]) -> None:
        headers: dict[str, str] = {}
        urls: list[str] = []
        words = iter(args)
        for word in words:
            if word == "-H":
                name, _, value = next(words).partition(":")
                headers[name.strip()] = value.strip()
            elif word != "-s":
                assert not word.startswith("-"), f"{source}: the walkthrough has no curl {word}"
                urls.append(word)
        [url] = urls
        self.response = httpx.get(url, headers=headers, timeout=30)
        assert self.response.status_code == 200, f"{source}: {self.response.text}"


@dataclass
class Cursor:
    """Where a walk is in a tutorial: the lines not run yet are ``lines[done:]``."""

    walk: Walk
    doc: str
    lines: list[tuple[str, str]]
    done: int = 0

    def run_until(self, start: str) -> None:
        """Run the lines before the next one that starts with ``start``."""
        stop_at = next(
            (n for n in range(self.done, len(self.lines)) if self.lines[n][1].startswith(start)),
            None,
        )
        assert stop_at is not None, f"{self.doc}: no line starting {start!r} is left to run"
        self._run(stop_at)

    def run_rest(self) -> None:
        self._run(len(self.lines))

    def _run(self, stop_at: int) -> None:
        while self.done < stop_at:
            source, line = self.lines[self.done]
            self.walk.line(self.doc, source, line)
            self.done += 1


def _token(out: str) -> str:
    found = TOKEN.search(out)
    assert found is not None, out
    return found.group(0)


@contextmanager
def walkthrough(folder: Path) -> Iterator[Walk]:
    """A fresh shell in ``folder``: no STORECAST_* settings of whoever runs the tests."""
    folder.mkdir(parents=True, exist_ok=True)
    with pytest.MonkeyPatch.context() as env, ExitStack() as background:
        for name in [n for n in os.environ if n.startswith("STORECAST_")]:
            env.delenv(name)
        env.setenv("COLUMNS", "200")
        env.setenv("NO_COLOR", "1")
        env.chdir(folder)
        walk = Walk(folder, env, background)
        yield walk
        walk.finish()


def trained_model(checkpoint: Path, folder: Path) -> None:
    """Premise: ``lstm_v1.pt`` (and its metrics) in the folder, as ``storecast train`` left it."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(checkpoint, folder / "lstm_v1.pt")
    metrics = checkpoint.with_name("lstm_v1.metrics.json")
    if metrics.exists():
        shutil.copyfile(metrics, folder / metrics.name)


def exec_start(doc: str) -> str:
    """The ``storecast ...`` command of the systemd unit's ``ExecStart=`` in ``doc``."""
    found = re.search(r"^\s*ExecStart=\S*/(storecast .+)$", (ROOT / doc).read_text(), re.MULTILINE)
    assert found is not None, f"{doc} has no ExecStart= line"
    return found.group(1)


def deploy(walk: Walk, version: int, stores: list[str] | None = None) -> None:
    """Premise: deploy ``version`` (to every device, or to ``stores``) as the admin."""
    selector = {"kind": "stores", "values": stores} if stores else {"kind": "all"}
    with walk.api("<admin token>") as api:
        body = {"model": MODEL, "version": version, "selector": selector}
        api.json("POST", "/v1/deployments", json=body)


@dataclass(frozen=True)
class Bundles:
    v1: Path  # made by bundles.md's own commands
    v2: Path  # the same model re-stamped as v2


@pytest.fixture(scope="module")
def bundles(trained_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Bundles:
    """docs/bundles.md, run: its bundle, and a v2 of it for the tutorials that need two."""
    folder = tmp_path_factory.mktemp("bundles")
    trained_model(trained_checkpoint, folder)
    with walkthrough(folder) as walk:
        walk.tutorial(BUNDLES).run_rest()
    v1 = folder / "dist" / "demand-lstm-v1.tar"
    v2 = v1.with_name("demand-lstm-v2.tar")
    v2.write_bytes(rebuild(v1.read_bytes(), version=2))
    return Bundles(v1, v2)


# -- the tutorials ---------------------------------------------------------------------------


def test_bundles_doc_packages_a_bundle_that_verifies(bundles: Bundles) -> None:
    meta = verify_bundle(bundles.v1).metadata
    assert (meta.name, meta.version) == (MODEL, 1)
    assert meta.metrics  # lstm_v1.metrics.json beside the checkpoint went in


def test_registry_quick_start_then_a_canary_rollout(
    trained_checkpoint: Path, bundles: Bundles, tmp_path: Path
) -> None:
    trained_model(trained_checkpoint, tmp_path)
    with walkthrough(tmp_path) as walk:
        walk.tutorial(REGISTRY).run_rest()
        with walk.api("<admin token>") as api:
            model = api.json("GET", f"/v1/models/{MODEL}")
            assert [v["version"] for v in model["versions"]] == [1]
            assert model["aliases"] == {"production": 1}
            assert api.json("GET", "/v1/audit/verify")["ok"]
        with walk.api("<device token>") as device:
            assert device.json("GET", "/v1/devices/edge-s001/assignment")["version"] == 1
        # bundles.md: packaging the same checkpoint twice gives the same bytes
        assert (tmp_path / "dist" / "demand-lstm-v1.tar").read_bytes() == bundles.v1.read_bytes()

        # rollouts.md picks up here; premise: the v2 bundle it publishes
        shutil.copyfile(bundles.v2, tmp_path / "dist" / "demand-lstm-v2.tar")
        walk.tutorial(ROLLOUTS).run_rest()
        with walk.api("<publisher token>") as api:
            canary = api.json("GET", f"/v1/deployments/{walk.values['deployment']}")
            assert api.json("GET", f"/v1/models/{MODEL}/versions/2")["version"] == 2
    assert (canary["strategy"], canary["status"]) == ("canary", "paused")
    assert [arm["version"] for arm in canary["arms"]] == [None, 2]  # A: @production, B: v2


def test_analytics_quick_start_then_an_edge_agent(bundles: Bundles, tmp_path: Path) -> None:
    with walkthrough(tmp_path) as walk:
        walk.tutorial(ANALYTICS).run_rest()
        assert walk.response is not None
        assert walk.response.json()["findings"], "the planted bad model explains nothing"
        with walk.api("<viewer token>") as api:
            devices = api.json("GET", "/v1/devices")["devices"]
        assert len(devices) == 20

        # edge.md's premise: "a model published and deployed" (as the admin, in cloud-home)
        with walk.api("<admin token>") as api:
            api.publish(bundles.v1)
            api.publish(bundles.v2)
        deploy(walk, 1)
        edge = walk.tutorial(EDGE)
        edge.run_until("curl")  # enrol, init, run, feed it sensors
        wait_until(lambda: walk.active_version() == 1, 30, "the agent to run v1")
        edge.run_until("storecast edge rollback")  # the forecast, the status
        assert walk.response is not None
        forecast = walk.response.json()
        assert (forecast["method"], len(forecast["points"])) == ("model", 6)

        # edge.md: "The rollback needs a previous model (publish and deploy a second version
        # first)". The agent polls every 60 s: a restart polls at once.
        deploy(walk, 2, stores=["S001"])
        walk.restart_agent()
        wait_until(lambda: walk.active_version() == 2, 30, "the agent to run v2")
        edge.run_rest()
        assert walk.active_version() == 1


def test_operations_runbook(bundles: Bundles, tmp_path: Path) -> None:
    with walkthrough(tmp_path) as walk:
        ops = walk.tutorial(OPERATIONS)
        ops.run_until("storecast models alias")  # init, serve; export, enrol, list
        with walk.api("<admin token>") as api:
            [device] = api.json("GET", "/v1/devices")["devices"]
            assert device["tags"] == ["pilot"]
            # premise: "A release normally comes from the pipeline": two are published
            api.publish(bundles.v1)
            api.publish(bundles.v2)
        ops.run_until("storecast edge init")  # alias, deploy, pilot, canary
        with walk.api("<admin token>") as api:
            newest = api.json("GET", "/v1/deployments")["deployments"][0]
            assert api.json("GET", f"/v1/models/{MODEL}")["aliases"] == {"production": 1}
        assert (newest["strategy"], newest["arms"][1]["version"]) == ("canary", 2)

        # premise: the registry's 1.root.json carried to the store machine
        shutil.copyfile(tmp_path / "srv" / "storecast" / "1.root.json", tmp_path / "1.root.json")
        ops.run_until("storecast edge rollback")  # edge init
        # premise: the service manager starts the agent (the unit's ExecStart) ...
        walk.line(OPERATIONS.doc, "docs/operations.md: ExecStart", exec_start(OPERATIONS.doc))
        wait_until(lambda: walk.active_version() is not None, 30, "the agent's first model")
        first = walk.active_version()
        # ... and the store gets another version before it is rolled back
        deploy(walk, 2 if first == 1 else 1, stores=["S001"])
        walk.restart_agent()
        wait_until(lambda: walk.active_version() not in (None, first), 30, "the second model")
        ops.run_rest()
        assert walk.active_version() == first


def test_readme_release_pipeline(tmp_path: Path) -> None:
    # premise: a registry and a publisher token (the CI secrets), and the repo's pipeline.toml
    config = registry_config(tmp_path / "registry", f"sqlite:///{tmp_path / 'registry.db'}")
    shutil.copyfile(ROOT / "pipeline.toml", tmp_path / "pipeline.toml")
    with serve_registry(config, init_registry(config)) as live, walkthrough(tmp_path) as walk:
        walk.values |= {"cloud": live.url, "<publisher token>": live.token("publisher")}
        walk.tutorial(README_RELEASE).run_rest()
        with live.client(live.admin) as http:
            model = http.get(f"/v1/models/{MODEL}").raise_for_status().json()
            [deployment] = http.get("/v1/deployments").raise_for_status().json()["deployments"]
    # no production model yet: the first release goes out at once
    assert ([v["version"] for v in model["versions"]], model["aliases"]) == ([1], {"production": 1})
    assert (deployment["strategy"], deployment["version"]) == ("immediate", 1)


def test_readme_training_on_own_data_and_on_a_synthetic_chain(tmp_path: Path) -> None:
    # premise: the reader's own history file (here a small synthetic chain, same schema)
    generate_chain(TINY_CHAIN).history.write_csv(tmp_path / "my_history.csv")
    with walkthrough(tmp_path) as walk:
        walk.tutorial(README_OWN_DATA).run_rest()
        own = json.loads((tmp_path / "lstm_v1.metrics.json").read_text())
        walk.tutorial(README_SYNTHETIC).run_rest()
        synthetic = json.loads((tmp_path / "lstm_v1.metrics.json").read_text())
    assert own["data"]["source"] == "my_history.csv"
    assert synthetic["data"]["source"] == "history.csv"
    assert synthetic["wape"]["lstm"] < synthetic["wape"]["snaive_168"]


# -- the guard -------------------------------------------------------------------------------


def walked_sources() -> set[str]:
    return {source for t in TUTORIALS for source, line in t.lines() if parse_line(source, line)}


def test_every_documented_command_is_run() -> None:
    walked = walked_sources()
    missing = [
        str(c)
        for c in DOC_COMMANDS
        if not is_executed(c) and c.source not in walked and c.text not in NOT_RUN_HERE
    ]
    assert not missing, "run these in a walkthrough, or say in NOT_RUN_HERE why not:\n" + "\n".join(
        missing
    )
    texts = {c.text for c in DOC_COMMANDS}
    assert set(NOT_RUN_HERE) <= texts, f"stale: {set(NOT_RUN_HERE) - texts}"
    assert not {c.text for c in DOC_COMMANDS if c.source in walked} & set(NOT_RUN_HERE)


def test_every_rewrite_still_matches_a_documented_line() -> None:
    words: dict[str, list[list[str]]] = {}
    for t in TUTORIALS:
        words.setdefault(t.doc, []).extend(
            shlex.split(line, comments=True) for _, line in t.lines()
        )
    for rule in REWRITES:
        docs = list(words) if rule.doc == "*" else [rule.doc]
        assert any(
            [rule.after, rule.old] == line[n : n + 2]
            for doc in docs
            for line in words[doc]
            for n in range(len(line))
        ), rule
    every_word = [w for lines in words.values() for line in lines for w in line]
    for url, _, why in URLS:
        assert any(url in word for word in every_word), (url, why)
