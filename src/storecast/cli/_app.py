"""The root typer app; subcommands register themselves from their modules."""

from __future__ import annotations

import logging
import sys
from typing import Annotated

import typer
from rich.console import Console
from rich.logging import RichHandler

from storecast import __version__
from storecast.client import ApiRefused
from storecast.common.errors import ConfigError, DataError, ModelError, StorecastError

console = Console()
err_console = Console(stderr=True)

app = typer.Typer(
    name="storecast",
    help="Edge-AI demand forecasting for retail chains: train, evaluate, simulate, demo.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # help text is plain: "[env: STORECAST_TOKEN]" stays visible
)

# Modules of the `train` and `cloud` extras: an edge install has none of them.
TRAINING_MODULES = frozenset({"torch", "onnx", "onnxscript", "pandas", "pyarrow"})
CLOUD_MODULES = frozenset({"sqlalchemy", "alembic", "gunicorn", "psycopg"})
USAGE_ERROR = 2  # exit code for bad input: data, arguments, model files
INTERRUPTED = 130  # exit code after Ctrl-C


def _version(value: bool) -> None:
    if value:
        console.print(f"storecast {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Show the version and exit."
        ),
    ] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log more.")] = False,
) -> None:
    """storecast: forecast store demand at the edge."""
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(message)s",
        handlers=[RichHandler(console=err_console, show_path=False)],
    )


def fail(message: str, code: int = USAGE_ERROR) -> typer.Exit:
    """Print an error the way every command does and return the exit to raise."""
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def main() -> None:
    """Console-script entry point: storecast errors become a message and exit code 2."""
    try:
        app()
    except (DataError, ConfigError, ModelError) as exc:
        err_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        sys.exit(USAGE_ERROR)
    except OSError as exc:  # an output path that cannot be written, a full disk
        where = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
        err_console.print(
            f"[bold red]error:[/] {where}{exc.strerror or exc}", highlight=False, soft_wrap=True
        )
        sys.exit(USAGE_ERROR)
    except ApiRefused as exc:  # the server said no: 4xx is the caller's input, 5xx is not
        err_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        sys.exit(USAGE_ERROR if 400 <= exc.status < 500 else 1)
    except ModuleNotFoundError as exc:
        extra = "train" if exc.name in TRAINING_MODULES else "cloud"
        if exc.name not in TRAINING_MODULES | CLOUD_MODULES:
            raise
        err_console.print(
            f"[bold red]error:[/] this command needs {exc.name}, part of the {extra} extra: "
            f"pip install 'storecast[{extra}]'",
            highlight=False,
            soft_wrap=True,
        )
        sys.exit(USAGE_ERROR)
    except StorecastError as exc:
        err_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        sys.exit(1)
    except KeyboardInterrupt:
        err_console.print("interrupted")
        sys.exit(INTERRUPTED)
