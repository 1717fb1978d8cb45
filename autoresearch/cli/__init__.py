"""The ``autoresearch`` command line (typer + rich). Logic lives in the library."""

from autoresearch.cli._app import (
    EXIT_BUSY,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    app,
    main,
)

__all__ = ["EXIT_BUSY", "EXIT_FAILED", "EXIT_INTERRUPTED", "EXIT_OK", "EXIT_USAGE", "app", "main"]
