"""``storecast package`` and ``storecast bundle verify``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from storecast.cli._app import app, console, fail

bundle_app = typer.Typer(help="Model bundles: inspect and verify.", no_args_is_help=True)
app.add_typer(bundle_app, name="bundle")


@app.command("package")
def package(
    checkpoint: Annotated[Path, typer.Argument(help="Training checkpoint (.pt).")],
    name: Annotated[str, typer.Option(help="Model name, e.g. demand-lstm.")] = "demand-lstm",
    version: Annotated[
        str, typer.Option(help="Version number, or 'auto' for the registry's next one.")
    ] = "1",
    out: Annotated[Path, typer.Option("--out", help="Folder for the bundle.")] = Path("dist"),
    registry: Annotated[
        str | None, typer.Option(help="Registry URL for --version auto [env: STORECAST_REGISTRY].")
    ] = None,
    token: Annotated[
        str | None, typer.Option(help="Token for --version auto [env: STORECAST_TOKEN].")
    ] = None,
) -> None:
    """Package a checkpoint as a deterministic bundle (model.pt, model.onnx, metadata.json).

    Exports to ONNX and refuses to package a model whose ONNX Runtime output differs
    from torch by more than 1e-4.
    """
    from storecast.bundle.packaging import build_bundle

    number = _version_number(version, name, registry, token)
    with console.status("exporting, checking parity, packaging"):
        built = build_bundle(checkpoint, name=name, version=number, out_dir=out)
    meta = built.bundle.metadata
    console.print(
        f"wrote {built.path} ({built.bundle.size:,} bytes)\n"
        f"  {meta.name} v{meta.version}, parity max abs diff {meta.parity_max_abs_diff:.1e}\n"
        f"  sha256 {built.bundle.sha256}",
        highlight=False,
    )


def _version_number(version: str, name: str, registry: str | None, token: str | None) -> int:
    if version == "auto":
        from storecast.client import CloudClient

        with CloudClient.from_env(registry, token) as client:
            number = client.next_version(name)
        console.print(f"the registry's next version of {name} is v{number}", highlight=False)
        return number
    if not version.isdigit() or int(version) < 1:
        raise fail(f"--version must be a whole number >= 1 or 'auto', got {version!r}")
    return int(version)


@bundle_app.command("verify")
def verify(bundle: Annotated[Path, typer.Argument(help="Bundle file (.tar).")]) -> None:
    """Check a bundle's structure and member hashes and print its metadata."""
    from storecast.bundle import verify_bundle

    checked = verify_bundle(bundle)
    meta = checked.metadata
    table = Table(title=f"{bundle.name}: OK", show_header=False)
    table.add_column("field")
    table.add_column("value")
    table.add_row("model", f"{meta.name} v{meta.version}")
    table.add_row("created", meta.created.isoformat())
    table.add_row("bundle sha256", checked.sha256)
    table.add_row("code commit", meta.lineage.code_commit or "unknown")
    table.add_row("training data", f"{meta.lineage.training_data_source}")
    table.add_row("training data sha256", f"{meta.lineage.training_data_sha256}")
    for name, info in sorted(meta.members.items()):
        table.add_row(name, f"{info.size:,} bytes, sha256 {info.sha256}")
    for spec in meta.inputs + meta.outputs:
        table.add_row(f"tensor {spec.name}", f"{spec.shape} {spec.dtype}")
    table.add_row("quantiles", ", ".join(str(q) for q in meta.quantiles))
    if meta.metrics:
        wape = meta.metrics.get("wape", {})
        table.add_row(
            "hold-out WAPE",
            ", ".join(f"{k} {v:.3f}" for k, v in wape.items() if isinstance(v, float)),
        )
    console.print(table)
