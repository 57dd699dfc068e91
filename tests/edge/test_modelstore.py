"""The model store: verified installs, atomic pointers, fallback at start-up, crash safety."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from storecast.edge.modelstore import ModelStore, ModelStoreError, Pointers, folder_name
from storecast.edge.runtime import load_model
from tests.edge._bundles import MODEL_NAME, EdgeBundles, flip_byte, sha256


@pytest.fixture
def store(tmp_path: Path) -> ModelStore:
    return ModelStore(tmp_path / "models")


def install(store: ModelStore, bundle: bytes) -> Path:
    return store.install(bundle, sha256(bundle))


def test_install_unpacks_a_verified_bundle_into_its_version_folder(
    store: ModelStore, modelstore_bundles: EdgeBundles
):
    bundle = modelstore_bundles.v1
    folder = install(store, bundle)
    assert folder == store.versions / folder_name(MODEL_NAME, 1, sha256(bundle))
    assert sorted(p.name for p in folder.iterdir()) == [
        "bundle.json",
        "metadata.json",
        "model.onnx",
        "model.pt",
    ]
    info = json.loads((folder / "bundle.json").read_text())
    assert (info["name"], info["version"], info["digest"]) == (MODEL_NAME, 1, sha256(bundle))
    assert store.installed() == [folder.name]
    assert store.pointers() == Pointers(None, None)  # installing never activates


def test_install_accepts_a_bundle_file(
    store: ModelStore, modelstore_bundles: EdgeBundles, tmp_path: Path
):
    path = tmp_path / "b.tar"
    path.write_bytes(modelstore_bundles.v1)
    assert install(store, modelstore_bundles.v1) == store.install(path, sha256(path.read_bytes()))


def test_install_refuses_a_bundle_whose_sha256_is_not_the_expected_digest(
    store: ModelStore, modelstore_bundles: EdgeBundles
):
    with pytest.raises(ModelStoreError, match="expected"):
        store.install(modelstore_bundles.v1, sha256(modelstore_bundles.v2))
    assert store.installed() == []


def test_install_refuses_bytes_that_are_not_a_valid_bundle(store: ModelStore):
    junk = b"not a tar" * 100
    with pytest.raises(ModelStoreError, match="refused"):
        store.install(junk, sha256(junk))
    assert list(store.versions.iterdir()) == []


def test_install_is_idempotent_for_a_folder_that_verifies(
    store: ModelStore, modelstore_bundles: EdgeBundles
):
    folder = install(store, modelstore_bundles.v1)
    inode = folder.stat().st_ino
    assert install(store, modelstore_bundles.v1) == folder
    assert folder.stat().st_ino == inode  # kept, not unpacked again


def test_install_replaces_a_folder_that_no_longer_verifies(
    store: ModelStore, modelstore_bundles: EdgeBundles
):
    folder = install(store, modelstore_bundles.v1)
    flip_byte(folder / "model.onnx")
    assert install(store, modelstore_bundles.v1) == folder
    assert load_model(folder).runtime == "onnxruntime"
    assert [p.name for p in store.versions.iterdir()] == [folder.name]  # no trash left


def test_install_redoes_what_a_crash_left_half_done(
    store: ModelStore, modelstore_bundles: EdgeBundles
):
    name = folder_name(MODEL_NAME, 1, sha256(modelstore_bundles.v1))
    (store.versions / f".staging-{name}").mkdir()
    (store.versions / f".staging-{name}" / "model.onnx").write_bytes(b"partial")
    folder = install(store, modelstore_bundles.v1)
    assert load_model(folder).version == 1
    assert [p.name for p in store.versions.iterdir()] == [name]


def test_activate_makes_the_old_active_previous(store: ModelStore, modelstore_bundles: EdgeBundles):
    v1 = install(store, modelstore_bundles.v1)
    v2 = install(store, modelstore_bundles.v2)
    assert store.activate(v1) == Pointers(v1.name, None)
    assert store.activate(v2) == Pointers(v2.name, v1.name)
    assert store.activate(v2.name) == Pointers(v2.name, v1.name)  # same again: unchanged
    assert ModelStore(store.root).pointers() == Pointers(v2.name, v1.name)


def test_activate_refuses_a_folder_that_is_not_installed(
    store: ModelStore, modelstore_bundles: EdgeBundles, tmp_path: Path
):
    with pytest.raises(ModelStoreError, match="not an installed"):
        store.activate(folder_name(MODEL_NAME, 9, "0" * 64))
    with pytest.raises(ModelStoreError, match="not a folder of this model store"):
        store.activate(tmp_path)
    assert store.pointers() == Pointers(None, None)


def test_rollback_swaps_active_and_previous(store: ModelStore, modelstore_bundles: EdgeBundles):
    v1 = install(store, modelstore_bundles.v1)
    v2 = install(store, modelstore_bundles.v2)
    store.activate(v1)
    store.activate(v2)
    assert store.rollback() == Pointers(v1.name, v2.name)
    assert store.rollback() == Pointers(v2.name, v1.name)


def test_rollback_without_a_previous_model_is_refused(
    store: ModelStore, modelstore_bundles: EdgeBundles
):
    store.activate(install(store, modelstore_bundles.v1))
    with pytest.raises(ModelStoreError, match="no previous"):
        store.rollback()


def test_pointers_stay_valid_when_a_crash_hits_between_temp_write_and_replace(
    store: ModelStore, modelstore_bundles: EdgeBundles, monkeypatch: pytest.MonkeyPatch
):
    v1 = install(store, modelstore_bundles.v1)
    v2 = install(store, modelstore_bundles.v2)
    store.activate(v1)
    before = (store.root / "pointers.json").read_bytes()

    def crash(src: object, dst: object) -> None:
        raise OSError("simulated crash before os.replace")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="simulated crash"):
        store.activate(v2)
    monkeypatch.undo()
    assert (store.root / "pointers.json").read_bytes() == before
    assert ModelStore(store.root).pointers() == Pointers(v1.name, None)
    assert ModelStore(store.root).load_startup().model is not None


def test_pointers_file_that_is_not_json_is_an_error(store: ModelStore):
    (store.root / "pointers.json").write_text("{not json")
    with pytest.raises(ModelStoreError, match="unreadable"):
        store.pointers()


def test_pointers_naming_a_path_outside_the_store_are_an_error(store: ModelStore):
    (store.root / "pointers.json").write_text('{"active": "../../etc", "previous": null}')
    with pytest.raises(ModelStoreError, match="not a version folder"):
        store.pointers()


def test_load_startup_loads_the_active_model(store: ModelStore, modelstore_bundles: EdgeBundles):
    store.activate(install(store, modelstore_bundles.v1))
    store.activate(install(store, modelstore_bundles.v2))
    startup = ModelStore(store.root).load_startup()
    assert startup.model is not None
    assert (startup.model.version, startup.fell_back, startup.problems) == (2, False, [])
    assert startup.model.digest == sha256(modelstore_bundles.v2)


def test_load_startup_without_any_model_gives_none(store: ModelStore):
    startup = store.load_startup()
    assert (startup.model, startup.fell_back, startup.problems) == (None, False, [])


def test_load_startup_falls_back_to_previous_when_active_is_corrupt(
    store: ModelStore, modelstore_bundles: EdgeBundles
):
    v1 = install(store, modelstore_bundles.v1)
    v2 = install(store, modelstore_bundles.v2)
    store.activate(v1)
    store.activate(v2)
    flip_byte(v2 / "model.onnx")
    startup = ModelStore(store.root).load_startup()
    assert startup.model is not None and startup.model.version == 1
    assert startup.fell_back
    assert len(startup.problems) == 1 and "active model" in startup.problems[0]
    assert "model.onnx" in startup.problems[0]
    # the fallback is made active, and the corrupt version is no rollback target
    assert store.pointers() == Pointers(v1.name, None)


def test_load_startup_falls_back_to_previous_when_active_is_missing(
    store: ModelStore, modelstore_bundles: EdgeBundles
):
    v1 = install(store, modelstore_bundles.v1)
    v2 = install(store, modelstore_bundles.v2)
    store.activate(v1)
    store.activate(v2)
    shutil.rmtree(v2)
    startup = store.load_startup()
    assert startup.model is not None and startup.model.version == 1 and startup.fell_back
    assert "not installed" in startup.problems[0]


def test_load_startup_reports_when_neither_active_nor_previous_loads(
    store: ModelStore, modelstore_bundles: EdgeBundles
):
    v1 = install(store, modelstore_bundles.v1)
    v2 = install(store, modelstore_bundles.v2)
    store.activate(v1)
    store.activate(v2)
    flip_byte(v1 / "model.pt")
    (v2 / "bundle.json").unlink()
    startup = store.load_startup()
    assert startup.model is None and not startup.fell_back
    assert len(startup.problems) == 2
    assert "model.pt" in startup.problems[1]


def test_load_startup_with_unreadable_pointers_serves_the_newest_installed_version(
    store: ModelStore, modelstore_bundles: EdgeBundles
):
    store.activate(install(store, modelstore_bundles.v1))
    v2 = install(store, modelstore_bundles.v2)
    (store.root / "pointers.json").write_text("garbage")
    startup = store.load_startup()
    assert startup.model is not None and startup.model.version == 2 and startup.fell_back
    assert "unreadable" in startup.problems[0]
    assert store.pointers() == Pointers(v2.name, None)
    assert (store.root / "pointers.json.corrupt").read_text() == "garbage"


def test_load_startup_sweeps_what_crashed_writers_left(
    store: ModelStore, modelstore_bundles: EdgeBundles
):
    store.activate(install(store, modelstore_bundles.v1))
    (store.versions / ".trash-x").mkdir()
    (store.versions / "..staging-x.abc").mkdir()
    (store.root / ".pointers.json.x.tmp").write_text("{")
    assert store.load_startup().model is not None
    assert [p.name for p in store.versions.iterdir()] == store.installed()
    assert not list(store.root.glob(".pointers.json.*"))


def test_prune_removes_oldest_versions_that_no_pointer_targets(
    store: ModelStore, modelstore_bundles: EdgeBundles
):
    folders = [install(store, modelstore_bundles.version(v)) for v in (1, 2, 3, 4, 5)]
    for i, folder in enumerate(folders):
        os.utime(folder, ns=(i * 10**9, i * 10**9))  # install order, whatever the fs clock
    store.activate(folders[0])
    store.activate(folders[3])  # active v4, previous v1 (the oldest)
    removed = store.prune(keep=3)
    assert removed == [folders[1].name, folders[2].name]
    assert store.installed() == [folders[0].name, folders[3].name, folders[4].name]
    assert store.prune(keep=0) == [folders[4].name]  # pointer targets always stay
    assert store.installed() == [folders[0].name, folders[3].name]


def test_remove_deletes_a_candidate_but_never_a_pointer_target(
    store: ModelStore, modelstore_bundles: EdgeBundles
):
    v1 = install(store, modelstore_bundles.v1)
    v2 = install(store, modelstore_bundles.v2)
    store.activate(v1)
    with pytest.raises(ModelStoreError, match="active"):
        store.remove(v1)
    store.remove(v2)
    assert store.installed() == [v1.name]


# -- kill -9 ---------------------------------------------------------------------------------

_CHURN = """
import sys
from pathlib import Path
from storecast.edge.modelstore import ModelStore

root, *args = sys.argv[1:]
store = ModelStore(Path(root))
bundles = [(Path(p).read_bytes(), d) for p, d in zip(args[::2], args[1::2])]
i = 0
while True:
    raw, digest = bundles[i % len(bundles)]
    store.activate(store.install(raw, digest))
    store.prune(keep=2)  # so the next install unpacks again
    if i % 4 == 3:
        store.rollback()
    if i == 0:
        print("ready", flush=True)
    i += 1
"""


@pytest.mark.slow
def test_kill_9_at_any_moment_leaves_a_verified_loadable_model(
    modelstore_bundles: EdgeBundles, tmp_path: Path
):
    root = tmp_path / "models"
    args: list[str] = []
    digests = set()
    for v, bundle in enumerate(
        (modelstore_bundles.v1, modelstore_bundles.v2, modelstore_bundles.v3)
    ):
        path = tmp_path / f"v{v + 1}.tar"
        path.write_bytes(bundle)
        args += [str(path), sha256(bundle)]
        digests.add(sha256(bundle))
    rng = random.Random(9)
    for _ in range(10):
        child = subprocess.Popen(
            [sys.executable, "-c", _CHURN, str(root), *args], stdout=subprocess.PIPE
        )
        assert child.stdout is not None
        try:
            assert child.stdout.readline() == b"ready\n"
            time.sleep(rng.uniform(0.0, 0.25))  # a random instant of install/activate/prune
        finally:
            child.send_signal(signal.SIGKILL)
            child.wait()
            child.stdout.close()
        startup = ModelStore(root).load_startup()
        assert startup.model is not None, startup.problems
        assert not startup.fell_back and startup.problems == []
        assert startup.model.digest in digests
