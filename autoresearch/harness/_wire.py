"""The private channel between an evaluator and its isolated child, over a pair of pipes.

One message: an 8-byte length, a JSON header, then each array it refers to in ``.npy`` format
(numpy's own header, then the raw data; never pickled). JSON values travel as they are; a numpy
array anywhere inside them becomes ``{"__ndarray__": i}`` in the JSON and the i-th array after
it. The reader trusts nothing: sizes, dtypes and references are checked before anything is
allocated.

The child loads this file by path, outside any package, so it imports stdlib only; numpy is
imported when an array is met.
"""

from __future__ import annotations

import json
import math
import os
import select
import struct
import sys
import time
from typing import Any

ARRAY_KEY = "__ndarray__"
_LENGTH = struct.Struct("<Q")
MAX_HEADER_BYTES = 64 * 2**20  # a JSON part larger than this is not a message
MAX_ARRAYS = 100_000  # arrays in one message
NPY_MAX_HEADER_BYTES = 10_000  # numpy's own default limit for an .npy header


class ChannelError(Exception):
    """The other side sent something that is not a message."""


class ChannelClosed(ChannelError):
    """The other side closed its end (or died)."""


class ChannelTimeout(ChannelError):
    """The deadline passed before the message was through."""


class Pipe:
    """One end of a pipe; reads and writes wait at most until ``deadline`` (time.monotonic()).

    With a deadline the descriptor must be non-blocking (the caller's side); without one it
    blocks (the child's side).
    """

    def __init__(self, fd: int, deadline: float | None = None) -> None:
        self.fd = fd
        self.deadline = deadline

    def _wait(self, events: int) -> None:
        if self.deadline is None:
            return
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise ChannelTimeout
        poller = select.poll()
        poller.register(self.fd, events)
        if not poller.poll(math.ceil(remaining * 1000)):
            raise ChannelTimeout

    def readinto(self, view: memoryview) -> None:
        got = 0
        while got < len(view):
            self._wait(select.POLLIN)
            try:
                n = os.readv(self.fd, [view[got:]])
            except BlockingIOError:
                continue
            if n == 0:
                raise ChannelClosed
            got += n

    def read(self, size: int) -> bytes:
        buf = bytearray(size)
        self.readinto(memoryview(buf))
        return bytes(buf)

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        sent = 0
        while sent < len(view):
            self._wait(select.POLLOUT)
            try:
                sent += os.write(self.fd, view[sent:])
            except BlockingIOError:
                continue
            except BrokenPipeError:
                raise ChannelClosed from None
        return len(view)


def _numpy() -> Any:
    import numpy

    return numpy


def _flatten(value: Any, arrays: list[Any]) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [_flatten(v, arrays) for v in value]
    if isinstance(value, dict):
        if ARRAY_KEY in value:
            raise TypeError(f"the dict key {ARRAY_KEY!r} is reserved")
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"dict keys must be str, got {type(key).__name__}")
            out[key] = _flatten(item, arrays)
        return out
    np = sys.modules.get("numpy")  # no array can exist before numpy is imported
    if np is not None:
        if isinstance(value, np.ndarray):
            if value.dtype.hasobject:
                raise TypeError("arrays of Python objects cannot be sent (no pickle)")
            arrays.append(value)
            return {ARRAY_KEY: len(arrays) - 1}
        if isinstance(value, np.generic) and not isinstance(value, np.datetime64):
            return _flatten(value.item(), arrays)
    raise TypeError(f"cannot send a {type(value).__name__}: send JSON values and numpy arrays")


def send(pipe: Pipe, value: Any) -> None:
    """Write one message; nothing is written when ``value`` cannot be sent (TypeError)."""
    arrays: list[Any] = []
    header = json.dumps({"body": _flatten(value, arrays), "arrays": len(arrays)}).encode()
    pipe.write(_LENGTH.pack(len(header)) + header)
    for array in arrays:
        _write_array(pipe, array)


def _write_array(pipe: Pipe, array: Any) -> None:
    np = _numpy()
    array = array if array.flags.c_contiguous else array.copy(order="C")  # keeps 0-d
    header = np.lib.format.header_data_from_array_1_0(array)
    try:
        np.lib.format.write_array_header_1_0(pipe, header)
    except ValueError:  # a header past 64 KiB (a dtype with very many fields)
        np.lib.format.write_array_header_2_0(pipe, header)
    if array.nbytes:
        pipe.write(array.reshape(-1).view(np.uint8))  # the data itself, not a copy


def receive(pipe: Pipe, max_bytes: float = math.inf) -> Any:
    """Read one message; its arrays may hold ``max_bytes`` of data in all."""
    (size,) = _LENGTH.unpack(pipe.read(_LENGTH.size))
    if size > MAX_HEADER_BYTES:
        raise ChannelError(f"a message header of {size} bytes")
    try:
        header = json.loads(pipe.read(size))
        body, count = header["body"], header["arrays"]
    except (ValueError, TypeError, KeyError, RecursionError):
        raise ChannelError("a malformed message header") from None
    if type(count) is not int or not 0 <= count <= MAX_ARRAYS:
        raise ChannelError("a message announcing a bad number of arrays")
    arrays = []
    for _ in range(count):
        array = _read_array(pipe, max_bytes)
        max_bytes -= array.nbytes
        arrays.append(array)
    try:
        return _restore(body, arrays)
    except RecursionError:
        raise ChannelError("a message nested too deeply") from None


# More elements than this is no honest reply, whatever their size (numpy's own limit is 2**63).
MAX_ARRAY_ELEMENTS = 2**40


def _read_array(pipe: Pipe, max_bytes: float) -> Any:
    np = _numpy()
    fmt = np.lib.format
    try:
        version = fmt.read_magic(pipe)
        if version == (1, 0):
            shape, fortran, dtype = fmt.read_array_header_1_0(pipe, NPY_MAX_HEADER_BYTES)
        elif version == (2, 0):
            shape, fortran, dtype = fmt.read_array_header_2_0(pipe, NPY_MAX_HEADER_BYTES)
        else:
            raise ValueError(f"version {version}")
    except ChannelError:
        raise
    except Exception:  # whatever numpy makes of a hostile header: not an array
        raise ChannelError("a malformed array header") from None
    if dtype.hasobject:
        raise ChannelError("an array of Python objects (refused: no pickle)")
    if any(n < 0 for n in shape):
        raise ChannelError("an array of negative shape")
    if dtype.itemsize == 0:  # |S0, |V0: "0 bytes" of any count would pass the size check
        raise ChannelError(f"an array of zero-size elements ({dtype.str})")
    count = math.prod(shape)
    if count > MAX_ARRAY_ELEMENTS or count * dtype.itemsize > max_bytes:
        raise ChannelError(
            f"arrays larger than the {max_bytes / 2**20:.0f} MB allowed (max_reply_mb)"
        )
    try:
        flat = np.empty(count, dtype)
    except (MemoryError, ValueError) as e:
        raise ChannelError(f"an array that cannot be allocated ({type(e).__name__})") from None
    if flat.nbytes:
        pipe.readinto(memoryview(flat.view(np.uint8)))
    return flat.reshape(shape[::-1]).T if fortran else flat.reshape(shape)


def _restore(value: Any, arrays: list[Any]) -> Any:
    if isinstance(value, list):
        return [_restore(v, arrays) for v in value]
    if isinstance(value, dict):
        if ARRAY_KEY in value:
            index = value[ARRAY_KEY]
            if len(value) != 1 or type(index) is not int or not 0 <= index < len(arrays):
                raise ChannelError("a bad array reference")
            return arrays[index]
        return {k: _restore(v, arrays) for k, v in value.items()}
    return value
