"""Read PyTorch ``.pth`` state dicts into numpy, without torch and without running foreign code.

A ``.pth`` file is a pickle, and unpickling can call any importable function: loading an untrusted
checkpoint with plain ``pickle`` (or ``torch.load(weights_only=False)``) runs whatever it asks.
This reader admits only an explicit allow-list of globals (``collections.OrderedDict``, torch's
tensor-rebuild functions and storage classes). None of them is imported: each is replaced by a
small local stand-in that records what to build, and tensors are built as numpy arrays from the
raw little-endian storage bytes. Any other global raises :class:`UnsafePickleError` before it is
called. The same code runs whether or not torch is installed.

Both serialisation formats are read:

- zip (``torch.save`` since torch 1.6): ``<archive>/data.pkl`` is the pickle, each storage is the
  record ``<archive>/data/<key>``, and ``<archive>/byteorder`` (optional) says the byte order;
- legacy (before 1.6, e.g. torchvision's 2019 ``wide_resnet50_2-95faca4d.pth``): a stream of
  pickles (magic number, protocol version, system info, the object, the sorted storage keys)
  followed by each storage as an int64 element count and its little-endian bytes.
"""

from __future__ import annotations

import collections
import dataclasses
import io
import os
import pickle
import re
import zipfile
from typing import Any, BinaryIO, Callable

import ml_dtypes
import numpy as np
from absl import logging

LEGACY_MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL_VERSION = 1001
_ZIP_MAGIC = b"PK\x03\x04"

# torch storage class -> element dtype (little-endian). UntypedStorage holds raw bytes.
_STORAGE_DTYPES: dict[str, np.dtype] = {
    "DoubleStorage": np.dtype("<f8"),
    "FloatStorage": np.dtype("<f4"),
    "HalfStorage": np.dtype("<f2"),
    "BFloat16Storage": np.dtype(ml_dtypes.bfloat16),
    "LongStorage": np.dtype("<i8"),
    "IntStorage": np.dtype("<i4"),
    "ShortStorage": np.dtype("<i2"),
    "CharStorage": np.dtype("i1"),
    "ByteStorage": np.dtype("u1"),
    "BoolStorage": np.dtype("?"),
    "ComplexFloatStorage": np.dtype("<c8"),
    "ComplexDoubleStorage": np.dtype("<c16"),
    "UntypedStorage": np.dtype("u1"),
}


class TorchCheckpointError(ValueError):
    """A ``.pth`` file that cannot be read: truncated, corrupt, or not a PyTorch checkpoint."""


class UnsafePickleError(TorchCheckpointError):
    """The pickle asks for a global outside the allow-list; nothing it asked for was run."""


class _FormatError(Exception):
    """Raised inside the reader; :func:`load_state_dict` adds the file name."""


@dataclasses.dataclass(frozen=True, slots=True)
class _StorageType:
    """Stand-in for a torch storage class such as ``torch.FloatStorage``."""

    name: str
    dtype: np.dtype


@dataclasses.dataclass(eq=False, slots=True)
class _Storage:
    """One storage: its dtype and element count from the pickle; its bytes arrive later."""

    key: str
    dtype: np.dtype
    numel: int
    data: np.ndarray | None = None

    def array(self) -> np.ndarray:
        if self.data is None:
            raise _FormatError(f"storage {self.key!r} is referenced but its data was never read")
        return self.data


@dataclasses.dataclass(frozen=True, slots=True)
class _StorageView:
    """A legacy-format view: ``numel`` elements of ``root`` starting at element ``offset``."""

    root: _Storage
    offset: int
    numel: int

    @property
    def dtype(self) -> np.dtype:
        return self.root.dtype

    def array(self) -> np.ndarray:
        flat = self.root.array()
        if self.offset + self.numel > flat.size:
            raise _FormatError(f"storage view past the end of storage {self.root.key!r}")
        return flat[self.offset : self.offset + self.numel]


@dataclasses.dataclass(frozen=True, slots=True)
class _TensorRef:
    """What ``torch._utils._rebuild_tensor_v2`` would build; materialised once all bytes are read."""

    storage: _Storage | _StorageView
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]

    def materialise(self) -> np.ndarray:
        flat = self.storage.array()
        dtype = flat.dtype
        if 0 in self.size:
            return np.zeros(self.size, dtype)
        last = self.offset + sum((n - 1) * s for n, s in zip(self.size, self.stride))
        if self.offset < 0 or last >= flat.size:
            raise _FormatError(
                f"tensor of size {self.size} (stride {self.stride}, offset {self.offset}) does not fit "
                f"in its storage of {flat.size} elements")
        view = np.lib.stride_tricks.as_strided(
            flat[self.offset :], shape=self.size, strides=[s * dtype.itemsize for s in self.stride],
            writeable=False)
        return np.array(view)


def _int_tuple(value: Any, what: str) -> tuple[int, ...]:
    if not isinstance(value, tuple) or not all(isinstance(v, int) and v >= 0 for v in value):
        raise _FormatError(f"tensor {what} must be a tuple of non-negative ints, got {value!r}")
    return value


def _rebuild_tensor(storage, storage_offset, size, stride) -> _TensorRef:
    if not isinstance(storage, (_Storage, _StorageView)):
        raise _FormatError(f"tensor storage is {type(storage).__name__}, not a storage")
    if not isinstance(storage_offset, int):
        raise _FormatError(f"tensor storage offset must be an int, got {storage_offset!r}")
    size, stride = _int_tuple(size, "size"), _int_tuple(stride, "stride")
    if len(size) != len(stride):
        raise _FormatError(f"tensor size {size} and stride {stride} differ in length")
    return _TensorRef(storage, storage_offset, size, stride)


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad, backward_hooks,
                       metadata=None) -> _TensorRef:
    del requires_grad, backward_hooks  # autograd state: meaningless for stored weights
    if metadata:  # conj/neg bits; never set on real-valued weights
        raise _FormatError(f"tensor metadata {metadata!r} is not supported")
    return _rebuild_tensor(storage, storage_offset, size, stride)


def _rebuild_parameter(data, requires_grad, backward_hooks):
    del requires_grad, backward_hooks
    return data


def _rebuild_parameter_with_state(data, requires_grad, backward_hooks, state):
    del requires_grad, backward_hooks, state  # Python attributes of an nn.Parameter subclass
    return data


_ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter_with_state,
    **{("torch", name): _StorageType(name, dtype) for name, dtype in _STORAGE_DTYPES.items()},
    ("torch.storage", "UntypedStorage"): _StorageType("UntypedStorage", _STORAGE_DTYPES["UntypedStorage"]),
}


class _RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that resolves only allow-listed globals, to local stand-ins."""

    def __init__(self, file: BinaryIO, *, path: str, storages: dict[str, _Storage],
                 read_record: Callable[..., bytes] | None = None):
        """``read_record`` reads a zip record; None means the legacy format."""
        super().__init__(file)
        self._path = path
        self._storages = storages
        self._read_record = read_record

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise UnsafePickleError(
                f"{self._path}: refused to load: the pickle asks for the global {module}.{name}, "
                "which is not a tensor or storage rebuild function. A weights file never needs it; "
                "the file may be malicious or is not a plain state dict (save model.state_dict(), "
                "not the model). Nothing was executed."
            ) from None

    def persistent_load(self, pid: Any) -> _Storage | _StorageView:
        if not isinstance(pid, tuple) or not pid or pid[0] not in ("storage", b"storage"):
            raise _FormatError(f"unsupported persistent id {pid!r:.200}")
        if self._read_record is not None:
            if len(pid) != 5:
                raise _FormatError(f"zip-format storage id must have 5 fields, got {pid!r:.200}")
            _, storage_type, key, _location, numel = pid
            view = None
        else:
            if len(pid) != 6:
                raise _FormatError(f"legacy storage id must have 6 fields, got {pid!r:.200}")
            _, storage_type, key, _location, numel, view = pid
        if not isinstance(storage_type, _StorageType):
            raise _FormatError(f"storage type {storage_type!r:.200} is not a torch storage class")
        if not isinstance(key, str) or not isinstance(numel, int) or numel < 0:
            raise _FormatError(f"malformed storage id {pid!r:.200}")
        storage = self._storages.get(key)
        if storage is None:
            storage = self._storages[key] = _Storage(key, storage_type.dtype, numel)
            if self._read_record is not None:
                storage.data = _zip_storage_array(self._read_record, key, storage)
        elif storage.dtype != storage_type.dtype:
            raise _FormatError(f"storage {key!r} is used with two dtypes")
        if view is None:
            return storage
        _view_key, offset, view_numel = view
        if not all(isinstance(v, int) and v >= 0 for v in (offset, view_numel)):
            raise _FormatError(f"malformed storage view {view!r:.200}")
        return _StorageView(storage, offset, view_numel)


def _zip_storage_array(read_record: Callable[..., bytes], key: str, storage: _Storage) -> np.ndarray:
    raw = read_record(f"data/{key}", size=storage.numel * storage.dtype.itemsize)
    return np.frombuffer(raw, storage.dtype)


def _read_zip(f: BinaryIO, path: str) -> Any:
    with zipfile.ZipFile(f) as archive:
        pickles = [n for n in archive.namelist() if re.fullmatch(r"[^/]+/data\.pkl", n)]
        if len(pickles) != 1:
            raise _FormatError(f"expected one '<archive>/data.pkl' record, found {pickles}")
        prefix = pickles[0][: -len("data.pkl")]

        def read_record(name: str, size: int | None = None) -> bytes:
            """Reads (and CRC-checks) one record; its size is checked first when known."""
            info = archive.NameToInfo.get(prefix + name)
            if info is None:
                raise _FormatError(f"record {name} is missing from the archive")
            if size is not None and info.file_size != size:
                raise _FormatError(f"record {name} has {info.file_size} bytes, the pickle says {size}")
            return archive.read(info)

        has_byteorder = prefix + "byteorder" in archive.NameToInfo
        byteorder = read_record("byteorder").decode() if has_byteorder else "little"
        if byteorder not in ("little", "big"):
            raise _FormatError(f"unknown byte order {byteorder!r}")
        storages: dict[str, _Storage] = {}
        unpickler = _RestrictedUnpickler(
            io.BytesIO(read_record("data.pkl")), path=path, storages=storages, read_record=read_record)
        obj = unpickler.load()
    if byteorder == "big":
        for storage in storages.values():
            storage.data = storage.data.view(storage.dtype.newbyteorder(">")).astype(storage.dtype)
    return obj


def _read_legacy(f: BinaryIO, path: str) -> Any:
    storages: dict[str, _Storage] = {}

    def load() -> Any:
        return _RestrictedUnpickler(f, path=path, storages=storages).load()

    magic = load()
    if magic != LEGACY_MAGIC_NUMBER:
        raise _FormatError("not a PyTorch checkpoint (neither a zip archive nor a legacy torch.save "
                           "stream: the magic number is missing)")
    protocol = load()
    if protocol != LEGACY_PROTOCOL_VERSION:
        raise _FormatError(f"unsupported legacy protocol version {protocol!r}")
    sys_info = load()
    if not isinstance(sys_info, dict) or not sys_info.get("little_endian", True):
        raise _FormatError("written on a big-endian machine, which the legacy format reader does not support")
    obj = load()
    keys = load()
    if not isinstance(keys, list):
        raise _FormatError("the list of storage keys is missing")
    for key in keys:
        storage = storages.get(key)
        if storage is None:
            raise _FormatError(f"storage {key!r} is listed but never referenced")
        header = f.read(8)
        count = int.from_bytes(header, "little", signed=True) if len(header) == 8 else -1
        if count != storage.numel:
            raise _FormatError(f"storage {key!r}: header says {count} elements, the pickle says {storage.numel}"
                               if count >= 0 else f"file ends before storage {key!r}")
        nbytes = count * storage.dtype.itemsize
        raw = f.read(nbytes)
        if len(raw) != nbytes:
            raise _FormatError(f"file ends inside storage {key!r} ({len(raw)} of {nbytes} bytes)")
        storage.data = np.frombuffer(raw, storage.dtype)
    return obj


def _collect_tensors(obj: Any, prefix: str, out: dict[str, np.ndarray], skipped: list[str]) -> None:
    """Flattens nested dicts of tensors to dotted keys ({'bn': {'conv.weight': t}} -> 'bn.conv.weight')."""
    for key, value in obj.items():
        name = f"{prefix}{key}"
        if isinstance(value, _TensorRef):
            out[name] = value.materialise()
        elif isinstance(value, dict):
            _collect_tensors(value, f"{name}.", out, skipped)
        else:
            skipped.append(name)


def load_state_dict(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Returns every tensor of a ``.pth`` file as a numpy array, keyed as in the state dict.

    Nested dicts (e.g. an RD4AD checkpoint ``{'bn': ..., 'decoder': ...}``) give dotted keys
    (``bn.conv1.weight``); entries that are not tensors (an epoch counter, say) are logged and skipped.

    Raises:
      FileNotFoundError: the file does not exist.
      UnsafePickleError: the pickle asks for a global outside the allow-list (nothing was executed).
      TorchCheckpointError: the file is truncated, corrupt, or not a PyTorch checkpoint.
    """
    path = os.fspath(path)
    with open(path, "rb") as f:
        is_zip = f.read(4) == _ZIP_MAGIC
        f.seek(0)
        try:
            obj = _read_zip(f, path) if is_zip else _read_legacy(f, path)
            if not isinstance(obj, dict):
                raise _FormatError(f"holds a {type(obj).__name__}, not a state dict")
            tensors: dict[str, np.ndarray] = {}
            skipped: list[str] = []
            _collect_tensors(obj, "", tensors, skipped)
        except UnsafePickleError:
            raise
        except Exception as e:  # any failure to parse foreign bytes is a bad file, reported as such
            reason = str(e) if isinstance(e, _FormatError) else f"{type(e).__name__}: {e}"
            raise TorchCheckpointError(
                f"{path}: cannot read this PyTorch checkpoint ({'zip' if is_zip else 'legacy'} format): "
                f"{reason}. The file is truncated, corrupt (e.g. an interrupted download) "
                "or not a PyTorch checkpoint: delete it and fetch or save it again."
            ) from e
    if skipped:
        logging.info("%s: ignored %d entries that are not tensors: %s", path, len(skipped), skipped[:10])
    return tensors
