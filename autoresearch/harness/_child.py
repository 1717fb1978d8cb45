"""The isolated child process of autoresearch.harness (started by _isolated.Worker).

    python -I -P -B _child.py REQUEST_FD REPLY_FD MODULE_PATH MODULE_NAME IMPORTABLE_JSON

It loads the module at MODULE_PATH, says it is ready, then answers one call per request until
the request pipe closes. Everything the protocol needs is imported before the importable folders
go on sys.path, so a json.py or numpy.py planted there cannot stand in for them here. From
the moment the module loads, this process is the candidate's: the caller trusts nothing it
sends back.
"""

import contextlib
import importlib.util
import json
import os
import sys
import traceback
from typing import Any

with contextlib.suppress(ImportError):  # the real numpy, before a candidate folder can shadow it
    import numpy  # noqa: F401

TRACEBACK_LINES = 30  # the end of a traceback is what says what went wrong
LINE_CHARS = 500  # longer traceback lines are cut


def _load(path: str, name: str) -> Any:
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path} as a module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


wire = _load(os.path.join(os.path.dirname(os.path.abspath(__file__)), "_wire.py"), "_harness_wire")


def _failure(exc: BaseException) -> dict[str, Any]:
    try:
        lines = "".join(traceback.format_exception(exc)).splitlines()
    except Exception:
        lines = [f"{type(exc).__name__} (its traceback could not be formatted)"]
    return {
        "ok": False,
        "type": type(exc).__name__,
        "traceback": [line[:LINE_CHARS] for line in lines[-TRACEBACK_LINES:]],
    }


def _reply(pipe: Any, message: dict[str, Any]) -> None:
    try:
        wire.send(pipe, message)
    except TypeError as exc:  # a return value that is neither JSON nor arrays
        wire.send(pipe, _failure(exc))


def main(argv: list[str]) -> int:
    requests, replies = wire.Pipe(int(argv[1])), wire.Pipe(int(argv[2]))
    module_path, module_name = argv[3], argv[4]
    sys.path[:0] = json.loads(argv[5])
    try:
        module = _load(module_path, module_name)
    except BaseException as exc:  # SystemExit too: an import that exits is a failed import
        _reply(replies, _failure(exc))
        return 0
    _reply(replies, {"ok": True, "value": None})
    while True:
        try:
            request = wire.receive(requests)
        except wire.ChannelClosed:
            return 0
        fn = getattr(module, request["function"], None)
        if not callable(fn):
            error = AttributeError(f"{module_name} has no function {request['function']}()")
            _reply(replies, _failure(error))
            continue
        try:
            value = fn(*request["args"], **request["kwargs"])
        except BaseException as exc:
            _reply(replies, _failure(exc))
        else:
            _reply(replies, {"ok": True, "value": value})


if __name__ == "__main__":
    sys.exit(main(sys.argv))
