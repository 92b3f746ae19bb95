"""Write torch's checkpoint file format from numpy arrays, without importing torch.

A run on the numpy backend never imports torch (its import can take longer than the run),
yet its checkpoints must be the same files as every other run's: `torch.load(path,
weights_only=True)` reads them, numpy arrays coming back as tensors. The format (torch's
`_use_new_zipfile_serialization`, format version 3) is an uncompressed zip holding

    archive/data.pkl     the object tree, pickle protocol 2; each tensor is
                         torch._utils._rebuild_tensor_v2(<storage>, offset, size, stride,
                         requires_grad, OrderedDict()) with <storage> a persistent id
                         ('storage', torch.<Dtype>Storage, key, 'cpu', numel)
    archive/data/<key>   each storage's raw little-endian bytes, 64-byte aligned in the file
    archive/byteorder, archive/version, archive/.format_version, archive/.storage_alignment

`dump` writes the pickle opcodes itself for the types a checkpoint holds (dict, list, tuple,
str, int, float, bool, None and numpy arrays); the tests load its files with torch.
"""

from __future__ import annotations

import struct
import zipfile
from typing import IO, Any

import numpy as np

ARCHIVE = "archive"
ALIGNMENT = 64

# numpy dtype -> the legacy storage class name torch pickles for it
STORAGES = {
    np.dtype(np.float32): "FloatStorage",
    np.dtype(np.float64): "DoubleStorage",
    np.dtype(np.float16): "HalfStorage",
    np.dtype(np.int64): "LongStorage",
    np.dtype(np.int32): "IntStorage",
    np.dtype(np.int16): "ShortStorage",
    np.dtype(np.int8): "CharStorage",
    np.dtype(np.uint8): "ByteStorage",
    np.dtype(np.bool_): "BoolStorage",
}

# pickle opcodes (protocol 2), see `pickletools`
PROTO, STOP, MARK = b"\x80\x02", b".", b"("
NONE, TRUE, FALSE = b"N", b"\x88", b"\x89"
BININT, LONG1, BINFLOAT, BINUNICODE = b"J", b"\x8a", b"G", b"X"
EMPTY_DICT, SETITEMS, EMPTY_LIST, APPENDS = b"}", b"u", b"]", b"e"
EMPTY_TUPLE, TUPLE, GLOBAL, REDUCE, BINPERSID = b")", b"t", b"c", b"R", b"Q"


class _Encoder:
    """The pickle of one object tree; arrays are collected in `storages` as they are met."""

    def __init__(self) -> None:
        self.out: list[bytes] = [PROTO]
        self.storages: list[np.ndarray] = []

    def encode(self, obj: Any) -> None:
        w = self.out.append
        if obj is None:
            w(NONE)
        elif obj is True or obj is False:
            w(TRUE if obj else FALSE)
        elif isinstance(obj, (int, np.integer)):
            self._int(int(obj))
        elif isinstance(obj, (float, np.floating)):
            w(BINFLOAT + struct.pack(">d", float(obj)))
        elif isinstance(obj, str):
            data = obj.encode("utf-8", "surrogatepass")
            w(BINUNICODE + struct.pack("<I", len(data)) + data)
        elif isinstance(obj, dict):
            w(EMPTY_DICT)
            if obj:
                w(MARK)
                for key, value in obj.items():
                    self.encode(key)
                    self.encode(value)
                w(SETITEMS)
        elif isinstance(obj, list):
            w(EMPTY_LIST)
            if obj:
                w(MARK)
                for item in obj:
                    self.encode(item)
                w(APPENDS)
        elif isinstance(obj, tuple):
            self._tuple(obj)
        elif isinstance(obj, np.ndarray):
            self._array(obj)
        else:
            raise TypeError(f"cannot write a {type(obj).__name__} into a checkpoint")

    def _int(self, value: int) -> None:
        if -(2**31) <= value < 2**31:
            self.out.append(BININT + struct.pack("<i", value))
            return
        size = (value.bit_length() + 8) // 8  # two's complement, with room for the sign bit
        self.out.append(LONG1 + bytes([size]) + value.to_bytes(size, "little", signed=True))

    def _tuple(self, items: tuple) -> None:
        if not items:
            self.out.append(EMPTY_TUPLE)
            return
        self.out.append(MARK)
        for item in items:
            self.encode(item)
        self.out.append(TUPLE)

    def _global(self, module: str, name: str) -> None:
        self.out.append(GLOBAL + f"{module}\n{name}\n".encode("ascii"))

    def _array(self, array: np.ndarray) -> None:
        storage = STORAGES.get(array.dtype.newbyteorder("="))
        if storage is None:
            raise TypeError(f"cannot write a {array.dtype} array into a checkpoint")
        # one storage per array, C-contiguous: strides are element counts of that layout
        data = np.asarray(array, dtype=array.dtype.newbyteorder("<"), order="C")
        key = str(len(self.storages))
        self.storages.append(data)
        strides = tuple(s // data.itemsize for s in data.strides)
        self._global("torch._utils", "_rebuild_tensor_v2")
        self.out.append(MARK)
        self.out.append(MARK)  # the persistent id of the storage
        self.encode("storage")
        self._global("torch", storage)
        self.encode(key)
        self.encode("cpu")
        self.encode(data.size)
        self.out.append(TUPLE + BINPERSID)
        self.encode(0)  # storage offset
        self._tuple(tuple(data.shape))
        self._tuple(strides)
        self.encode(False)  # requires_grad
        self._global("collections", "OrderedDict")  # backward hooks: none
        self.out.append(EMPTY_TUPLE + REDUCE)
        self.out.append(TUPLE + REDUCE)


def dump(obj: Any, f: IO[bytes]) -> None:
    """Write `obj` to the binary file `f` as `torch.save` would, numpy arrays as CPU tensors."""
    encoder = _Encoder()
    encoder.encode(obj)
    encoder.out.append(STOP)
    with zipfile.ZipFile(f, "w", compression=zipfile.ZIP_STORED) as archive:

        def record(name: str, data: bytes, align: bool = False) -> None:
            info = zipfile.ZipInfo(f"{ARCHIVE}/{name}", date_time=(1980, 1, 1, 0, 0, 0))
            if align:  # pad the local header's extra field so the data starts on a boundary
                start = archive.start_dir + 30 + len(info.filename.encode())
                info.extra = _padding(-(start + 4) % ALIGNMENT)
            archive.writestr(info, data)

        record("data.pkl", b"".join(encoder.out))
        record(".format_version", b"1")
        record(".storage_alignment", str(ALIGNMENT).encode())
        record("byteorder", b"little")
        for key, data in enumerate(encoder.storages):
            record(f"data/{key}", data.tobytes(), align=True)
        record("version", b"3\n")


def _padding(size: int) -> bytes:
    """A zip extra field of `size` + 4 bytes in all (id 0xFFFF, ignored by readers)."""
    return struct.pack("<HH", 0xFFFF, size) + bytes(size)
