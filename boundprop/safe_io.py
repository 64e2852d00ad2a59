"""Files in and out, safely: every path a user gives goes through here.

- Inputs (certificates, VNN-LIB properties, .npy/.txt arrays): must be regular files (a FIFO,
  a device such as ``/dev/zero`` or a folder is refused before it is opened, so nothing hangs
  or grows without end) no larger than a size cap; read with the cap enforced again while
  reading (a file that grows under us is refused too).
- Outputs: written atomically (a temporary file in the same folder renamed into place, so a
  reader sees the old file or the whole new one), only onto a regular file or a new path. A
  symlink is written *through* (its target is replaced, the link stays), never replaced by a
  regular file; a device, FIFO, socket or folder is refused; an output that is one of the
  command's own inputs (the model being certified) is refused.
"""

from __future__ import annotations

import errno
import io
import json
import math
import os
import stat
import tempfile
import warnings
from collections.abc import Iterable
from typing import Any

import numpy as np

from boundprop.errors import BoundpropError

MAX_TEXT_INPUT_BYTES = 256 * 2**20  # certificates, properties, text arrays
MAX_ARRAY_INPUT_BYTES = 2**30  # .npy / .txt arrays (input sets, data batches, targets)


def os_reason(e: OSError) -> str:
    """The OS's reason for ``e`` in words, one line."""
    if e.errno == errno.ENAMETOOLONG:
        return "the path or a name in it is too long"
    return e.strerror or str(e)


def short_path(path: str | os.PathLike) -> str:
    """A path as shown in a one-line message (a 5,000-character path is cut)."""
    text = os.fspath(path)
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return text if len(text) <= 120 else f"{text[:60]}…{text[-40:]}"


def check_input_file(path: str | os.PathLike, what: str,
                     max_bytes: int = MAX_TEXT_INPUT_BYTES, hint: str = "") -> int:
    """Size in bytes of the regular file ``path``; a one-line :class:`BoundpropError` if it is
    missing, not a regular file (folder, FIFO, device, socket), unreadable or over
    ``max_bytes``. ``what`` names it ("certificate", "--vnnlib property"…)."""
    tail = f"; {hint}" if hint else ""
    where = f"{what} {short_path(path)}"
    if os.fspath(path) in ("", b""):
        raise BoundpropError(f"{what}: empty path{tail}")
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise BoundpropError(f"{where}: no such file{tail}") from None
    except (OSError, ValueError) as e:
        reason = os_reason(e) if isinstance(e, OSError) else str(e)
        raise BoundpropError(f"cannot read {where}: {reason}{tail}") from None
    if stat.S_ISDIR(st.st_mode):
        raise BoundpropError(f"{where} is a folder, not a file{tail}")
    if not stat.S_ISREG(st.st_mode):
        raise BoundpropError(f"{where} is not a regular file (a device, FIFO or socket)"
                             f"{tail or '; give a regular file'}")
    if st.st_size > max_bytes:
        raise BoundpropError(f"{where} is {st.st_size / 2**20:.0f} MiB, over the "
                             f"{max_bytes / 2**20:.0f} MiB limit for a {what}{tail}")
    return st.st_size


def read_input_bytes(path: str | os.PathLike, what: str,
                     max_bytes: int = MAX_TEXT_INPUT_BYTES, hint: str = "") -> bytes:
    """The bytes of the regular file ``path`` (see :func:`check_input_file`), reading at most
    ``max_bytes`` + 1 so that a file growing while read is refused, not followed."""
    check_input_file(path, what, max_bytes, hint)
    try:
        with open(path, "rb") as f:
            data = f.read(max_bytes + 1)
    except OSError as e:
        tail = f"; {hint}" if hint else ""
        raise BoundpropError(f"cannot read {what} {short_path(path)}: {os_reason(e)}{tail}") \
            from None
    if len(data) > max_bytes:
        raise BoundpropError(f"{what} {short_path(path)} is over the {max_bytes / 2**20:.0f} MiB "
                             f"limit for a {what}")
    return data


def read_input_text(path: str | os.PathLike, what: str,
                    max_bytes: int = MAX_TEXT_INPUT_BYTES, hint: str = "") -> str:
    """The UTF-8 text of the regular file ``path`` (see :func:`read_input_bytes`)."""
    data = read_input_bytes(path, what, max_bytes, hint)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        tail = f"; {hint}" if hint else ""
        raise BoundpropError(f"{what} {short_path(path)} is not UTF-8 text (byte {e.start})"
                             f"{tail}") from None


def load_array(path: str | os.PathLike, what: str,
               max_bytes: int = MAX_ARRAY_INPUT_BYTES) -> np.ndarray:
    """The real-valued array in the regular file ``path``: a ``.npy`` file (read as bytes
    first, then parsed with ``allow_pickle=False``, so no code runs and a FIFO or device never
    hangs) or whitespace-separated text. Booleans and integers are accepted (cast to float64
    by the caller), anything else (strings, objects, complex numbers) is a one-line
    :class:`BoundpropError`."""
    hint = "give a .npy file or a text file of numbers"
    data = read_input_bytes(path, what, max_bytes, hint)
    where = f"{what} {short_path(path)}"
    npy = os.fspath(path).endswith(".npy") or data[:6] == b"\x93NUMPY"
    if npy:
        _check_npy_size(data, where, hint)
    try:
        if npy:
            arr = np.load(io.BytesIO(data), allow_pickle=False)
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # "input contained no data": refused below
                arr = np.loadtxt(io.StringIO(data.decode("utf-8")), dtype=np.float64)
    except (ValueError, UnicodeDecodeError, EOFError, OSError) as e:
        reason = " ".join(str(e).split())[:160]
        raise BoundpropError(f"{where} is not a readable array ({reason}); {hint}") from None
    if not isinstance(arr, np.ndarray):  # np.load of an .npz archive
        raise BoundpropError(f"{where} is an .npz archive, not one array; {hint}")
    if arr.dtype.kind not in "biuf":
        raise BoundpropError(f"{where} holds {arr.dtype} values, not real numbers; {hint}")
    if arr.size == 0:
        raise BoundpropError(f"{where} holds no numbers; {hint}")
    return arr


def _check_npy_size(data: bytes, where: str, hint: str) -> None:
    """Refuse an .npy whose header declares more data than the file holds (np.load would
    first try to allocate what the header says: 2⁴⁰ values from a 16-byte file)."""
    f = io.BytesIO(data)
    try:
        version = np.lib.format.read_magic(f)
        read = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                else np.lib.format.read_array_header_2_0)
        shape, _, dtype = read(f)
    except (ValueError, EOFError, OSError):
        return  # not a readable header: np.load says why
    need = math.prod(shape) * dtype.itemsize
    if need > len(data) - f.tell():
        raise BoundpropError(f"{where} is truncated: its header declares {shape} "
                             f"{dtype} values ({need} bytes), the file holds "
                             f"{len(data) - f.tell()}; {hint}")


def json_safe(obj: Any, where: str = "") -> Any:
    """``obj`` with every float JSON can carry: ±inf becomes the string "inf" / "-inf" (what
    the certificate schema writes for "no finite bound"); a NaN is a one-line
    :class:`BoundpropError` naming its key path (a NaN where a number is due is a bug, and
    JSON has no NaN). numpy scalars and arrays become Python numbers and lists."""
    if isinstance(obj, dict):
        return {k: json_safe(v, f"{where}/{k}") for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v, f"{where}/{i}") for i, v in enumerate(obj)]
    if isinstance(obj, np.ndarray):
        return json_safe(obj.tolist(), where)
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        if math.isnan(obj):
            raise BoundpropError(f"the result has NaN at {where or 'the top level'} (a NaN in "
                                 "the model's weights, or a bug: please report it with the "
                                 "model); nothing written")
        return "inf" if obj > 0 else "-inf"
    return obj


def json_text(obj: Any, indent: int | None = None) -> str:
    """Strict JSON of ``obj`` (see :func:`json_safe`): never a bare NaN or Infinity token."""
    return json.dumps(json_safe(obj), indent=indent, allow_nan=False)


def _same_file(a: str, b: str | os.PathLike) -> bool:
    try:
        return os.path.samefile(a, b)
    except (OSError, ValueError):
        return False


def resolve_output_path(path: str | os.PathLike, what: str = "output",
                        protect: Iterable[str | os.PathLike] = ()) -> str:
    """The path to write ``path``'s content to: ``path`` itself, or the target of the symlink
    ``path`` (written through). One-line :class:`BoundpropError` when it is empty, a folder,
    a device, FIFO or socket, a dangling symlink, its folder does not exist, or it is the same
    file as one of ``protect`` (e.g. the model being certified)."""
    raw = os.fspath(path)
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8", "surrogateescape")
    if not raw.strip():
        raise BoundpropError(f"{what}: empty output path; give a file name")
    target = raw
    try:
        if os.path.islink(raw):
            target = os.path.realpath(raw)
            if not os.path.exists(target):
                raise BoundpropError(f"{what} {short_path(raw)} is a symlink to a missing file; "
                                     "give a plain file name")
        st = os.stat(target)
    except FileNotFoundError:
        st = None
    except OSError as e:
        raise BoundpropError(f"cannot write {what} {short_path(raw)}: {os_reason(e)}; choose "
                             "another output path") from None
    if st is not None:
        if stat.S_ISDIR(st.st_mode):
            raise BoundpropError(f"{what} {short_path(raw)} is a folder; give a file name in it")
        if not stat.S_ISREG(st.st_mode):
            raise BoundpropError(f"{what} {short_path(raw)} is not a regular file (a device, FIFO "
                                 "or socket); it is left alone: give a file name")
        for p in protect:
            if p is not None and _same_file(target, p):
                raise BoundpropError(f"{what} {short_path(raw)} is the input {short_path(p)}; it "
                                     "would be overwritten: choose another output path")
    folder = os.path.dirname(os.path.abspath(target))
    if not os.path.isdir(folder):
        raise BoundpropError(f"cannot write {short_path(raw)}: folder {short_path(folder)} does "
                             "not exist; create it or choose another output path")
    name = os.path.basename(target)
    try:
        max_name = os.pathconf(folder, "PC_NAME_MAX")
    except (OSError, ValueError):
        max_name = 255
    if len(os.fsencode(name)) > max_name:
        raise BoundpropError(f"cannot write {short_path(raw)}: the file name is longer than "
                             f"{max_name} bytes; choose a shorter name")
    return target


def write_atomic(path: str | os.PathLike, text: str | bytes, what: str = "output",
                 protect: Iterable[str | os.PathLike] = ()) -> None:
    """Write ``text`` to ``path`` through a temporary file in the same folder renamed into
    place: readers see the old file or the whole new one, never half of it. The file gets the
    usual mode (mkstemp's is 0600). Only regular files and new paths are written (a symlink is
    written through); see :func:`resolve_output_path` for what is refused, always with a
    one-line error and nothing written."""
    target = resolve_output_path(path, what, protect)
    folder = os.path.dirname(os.path.abspath(target))
    try:
        fd, tmp = tempfile.mkstemp(prefix=".boundprop-", suffix=".tmp", dir=folder)
    except OSError as e:
        raise BoundpropError(f"cannot write {short_path(path)}: {os_reason(e)}; choose another "
                             "output path") from None
    umask = os.umask(0)
    os.umask(umask)
    try:
        os.chmod(tmp, 0o666 & ~umask)
        with os.fdopen(fd, "wb" if isinstance(text, bytes) else "w",
                       **({} if isinstance(text, bytes) else {"encoding": "utf-8"})) as f:
            f.write(text)
        os.replace(tmp, target)
    except OSError as e:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise BoundpropError(f"cannot write {short_path(path)}: {os_reason(e)}; choose another "
                             "output path") from None
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
