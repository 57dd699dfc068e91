import hashlib
import io
import json
import tarfile
from pathlib import Path

import pytest

from storecast.bundle import BundleError, Limits, read_members, safe_extract, verify_bundle
from storecast.bundle.archive import write_tar
from storecast.bundle.packaging import build_bundle
from storecast.common.errors import ModelError


@pytest.fixture(scope="module")
def bundle_path(trained_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    return build_bundle(trained_checkpoint, name="demand-lstm", version=1, out_dir=out).path


def members_of(path: Path) -> dict[str, bytes]:
    return read_members(path)


def tar_bytes(entries: list[tuple[tarfile.TarInfo, bytes | None]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for info, data in entries:
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def regular(name: str, data: bytes = b"x") -> tuple[tarfile.TarInfo, bytes]:
    return tarfile.TarInfo(name), data


def test_same_checkpoint_gives_the_same_bytes(trained_checkpoint, bundle_path, tmp_path):
    again = build_bundle(trained_checkpoint, name="demand-lstm", version=1, out_dir=tmp_path)
    assert again.path.read_bytes() == bundle_path.read_bytes()
    assert again.bundle.sha256 == hashlib.sha256(bundle_path.read_bytes()).hexdigest()


def test_bundle_holds_the_three_members_and_complete_metadata(bundle_path, trained_checkpoint):
    with tarfile.open(bundle_path) as tar:
        infos = tar.getmembers()
    assert [i.name for i in infos] == ["metadata.json", "model.onnx", "model.pt"]
    assert all(i.mtime == 0 and i.uid == 0 and i.mode == 0o644 for i in infos)
    checked = verify_bundle(bundle_path)
    meta = checked.metadata
    assert (meta.name, meta.version, meta.format_version) == ("demand-lstm", 1, 1)
    assert (
        meta.members["model.pt"].sha256
        == hashlib.sha256(trained_checkpoint.read_bytes()).hexdigest()
    )
    assert meta.lineage.training_data_sha256 and meta.lineage.training_params
    assert meta.metrics is not None and "wape" in meta.metrics
    assert [t.name for t in meta.inputs] == ["past", "future"]
    assert meta.outputs[0].shape == ["batch", 24, 3]
    assert meta.quantiles == [0.1, 0.5, 0.9]
    assert meta.parity_max_abs_diff <= 1e-4


def test_a_tampered_member_fails_verification(bundle_path, tmp_path):
    members = members_of(bundle_path)
    onnx = bytearray(members["model.onnx"])
    onnx[-1] ^= 0xFF
    bad = write_tar({**members, "model.onnx": bytes(onnx)}, tmp_path / "bad.tar")
    with pytest.raises(BundleError, match=r"model\.onnx has sha256 .* metadata\.json says"):
        verify_bundle(bad)


def test_a_member_of_another_size_fails_verification(bundle_path, tmp_path):
    members = members_of(bundle_path)
    bad = write_tar({**members, "model.pt": members["model.pt"] + b"\0"}, tmp_path / "b.tar")
    with pytest.raises(BundleError, match=r"model\.pt is \d+ bytes, metadata\.json says"):
        verify_bundle(bad)


def test_missing_and_unexpected_members(bundle_path, tmp_path):
    members = members_of(bundle_path)
    missing = {k: v for k, v in members.items() if k != "model.onnx"}
    with pytest.raises(BundleError, match=r"missing member\(s\) model\.onnx"):
        verify_bundle(write_tar(missing, tmp_path / "m.tar"))
    extra = {**members, "notes.txt": b"hi"}
    with pytest.raises(BundleError, match=r"unexpected member\(s\) notes\.txt"):
        verify_bundle(write_tar(extra, tmp_path / "e.tar"))


def test_metadata_errors_name_the_field(bundle_path, tmp_path):
    members = members_of(bundle_path)
    meta = json.loads(members["metadata.json"])
    with_unknown = {**meta, "surprise": 1}
    path = write_tar(
        {**members, "metadata.json": json.dumps(with_unknown).encode()}, tmp_path / "u.tar"
    )
    with pytest.raises(BundleError, match=r"field 'surprise': Extra inputs are not permitted"):
        verify_bundle(path)
    bad_version = {**meta, "version": 0}
    path = write_tar(
        {**members, "metadata.json": json.dumps(bad_version).encode()}, tmp_path / "v.tar"
    )
    with pytest.raises(BundleError, match=r"field 'version'"):
        verify_bundle(path)
    path = write_tar({**members, "metadata.json": b"{not json"}, tmp_path / "j.tar")
    with pytest.raises(BundleError, match="not valid JSON"):
        verify_bundle(path)
    future = {**meta, "format_version": 99}
    path = write_tar({**members, "metadata.json": json.dumps(future).encode()}, tmp_path / "f.tar")
    with pytest.raises(BundleError, match="bundle format 99 is not supported"):
        verify_bundle(path)


@pytest.mark.parametrize("name", ["../evil", "a/../../evil", "/etc/passwd", "a\\b", "./x"])
def test_unsafe_names_are_refused(name):
    data = tar_bytes([regular(name)])
    with pytest.raises(BundleError, match="unsafe member name"):
        read_members(data)


def special(name: str, kind: bytes, target: str = "") -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = target
    return info, None


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        (special("model.onnx", tarfile.SYMTYPE, "/etc/passwd"), "is a link"),
        (special("model.onnx", tarfile.LNKTYPE, "metadata.json"), "is a link"),
        (special("model.onnx", tarfile.CHRTYPE), "non-regular file"),
        (special("model.onnx", tarfile.FIFOTYPE), "non-regular file"),
        (special("models", tarfile.DIRTYPE), "non-regular file"),
    ],
)
def test_links_devices_and_directories_are_refused(entry, message):
    with pytest.raises(BundleError, match=message):
        read_members(tar_bytes([regular("metadata.json"), entry]))


def test_duplicate_members_are_refused():
    with pytest.raises(BundleError, match="appears twice"):
        read_members(tar_bytes([regular("a"), regular("a")]))


def test_size_limits_are_enforced_before_reading():
    data = tar_bytes([regular("a", b"x" * 100)])
    with pytest.raises(BundleError, match="over the 10-byte limit"):
        read_members(data, Limits(member_bytes=10))
    data = tar_bytes([regular("a", b"x" * 60), regular("b", b"x" * 60)])
    with pytest.raises(BundleError, match="members exceed 100 bytes"):
        read_members(data, Limits(total_bytes=100))
    data = tar_bytes([regular(f"m{i}") for i in range(5)])
    with pytest.raises(BundleError, match="5 members, at most 4"):
        read_members(data, Limits(members=4))


def test_an_oversized_file_is_refused_before_it_is_read(tmp_path):
    big = tmp_path / "big.tar"
    with big.open("wb") as fh:
        fh.truncate(10 * 1024 * 1024)  # sparse: costs no disk
    with pytest.raises(BundleError, match="over the 1048576-byte limit"):
        read_members(big, Limits(total_bytes=1024 * 1024))


def test_not_a_tar_and_truncated_tar(bundle_path, tmp_path):
    with pytest.raises(BundleError, match="not a tar archive"):
        verify_bundle(b"definitely not a tar" * 100)
    truncated = bundle_path.read_bytes()[:2000]
    with pytest.raises(BundleError):
        verify_bundle(truncated)
    with pytest.raises(BundleError, match="no such file"):
        verify_bundle(tmp_path / "absent.tar")


def test_safe_extract_writes_everything_or_nothing(bundle_path, tmp_path):
    dest = tmp_path / "v1"
    assert safe_extract(bundle_path, dest).metadata.version == 1
    assert sorted(p.name for p in dest.iterdir()) == ["metadata.json", "model.onnx", "model.pt"]
    with pytest.raises(BundleError, match="already exists"):
        safe_extract(bundle_path, dest)
    evil = tar_bytes([regular("ok.txt"), regular("../evil")])
    with pytest.raises(BundleError):
        safe_extract(evil, tmp_path / "v2")
    assert not (tmp_path / "v2").exists() and not (tmp_path / "evil").exists()
    members = members_of(bundle_path)
    tampered = write_tar({**members, "model.pt": members["model.pt"][::-1]}, tmp_path / "t.tar")
    with pytest.raises(BundleError, match="sha256"):
        safe_extract(tampered, tmp_path / "v3")
    assert not (tmp_path / "v3").exists()
    tampered.unlink()
    assert [p.name for p in tmp_path.iterdir()] == ["v1"]  # no temporary leftovers


def test_packaging_refuses_a_model_that_fails_the_parity_check(
    trained_checkpoint, tmp_path, monkeypatch
):
    import torch

    from storecast.bundle import packaging
    from storecast.forecasting.export import export_onnx

    def export_a_different_model(model, path):
        with torch.no_grad():
            other = type(model)(model.config)
            other.load_state_dict(model.state_dict())
            for p in other.parameters():
                p.add_(0.05)
        return export_onnx(other, path)

    monkeypatch.setattr(packaging, "export_onnx", export_a_different_model)
    with pytest.raises(ModelError, match="parity check failed"):
        build_bundle(trained_checkpoint, name="demand-lstm", version=2, out_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_bad_names_and_versions_are_refused(trained_checkpoint, tmp_path):
    with pytest.raises(BundleError, match="positive integer"):
        build_bundle(trained_checkpoint, name="demand-lstm", version=0, out_dir=tmp_path)
    with pytest.raises(BundleError, match="model name 'Bad Name!'"):
        build_bundle(trained_checkpoint, name="Bad Name!", version=1, out_dir=tmp_path)


def test_a_metrics_file_of_another_run_is_refused(trained_checkpoint, tmp_path):
    import shutil

    from storecast.forecasting.workflow import metrics_path

    ckpt = tmp_path / "m.pt"
    shutil.copy(trained_checkpoint, ckpt)
    report = json.loads(metrics_path(trained_checkpoint).read_text())
    metrics_path(ckpt).write_text(json.dumps({**report, "checkpoint_sha256": "0" * 64}))
    with pytest.raises(BundleError, match=r"does not belong to m\.pt"):
        build_bundle(ckpt, name="demand-lstm", version=1, out_dir=tmp_path / "dist")
    metrics_path(ckpt).unlink()  # without metrics the bundle is made, metrics null
    built = build_bundle(ckpt, name="demand-lstm", version=1, out_dir=tmp_path / "dist")
    assert built.bundle.metadata.metrics is None


def test_metadata_with_an_unusable_feature_spec_is_refused(bundle_path, tmp_path):
    members = members_of(bundle_path)
    meta = json.loads(members["metadata.json"])
    meta["features"]["version"] = 42
    path = write_tar({**members, "metadata.json": json.dumps(meta).encode()}, tmp_path / "x.tar")
    with pytest.raises(BundleError, match="field 'features'"):
        verify_bundle(path)
