"""The torch-free .pth reader against torch.save, and its refusal of unsafe or damaged files."""

import collections
import os
import pickle
import struct
import subprocess
import sys
import zipfile

import numpy as np
import pytest

from rgpkd_jax import torch_pickle


FORMATS = {"zip": True, "legacy": False}  # torch.save's _use_new_zipfile_serialization


def _tensors():
    """Tensors that exercise dtypes, strides, offsets, shared storage, scalars and empties."""
    import torch
    g = torch.Generator().manual_seed(0)
    base = torch.randn(40, generator=g)
    return {
        "conv.weight": torch.randn(8, 3, 3, 3, generator=g),
        "transposed": torch.randn(5, 7, generator=g).t(),  # non-contiguous strides
        "slice": base[3:13],  # storage offset
        "shared_view": base[10:30].view(4, 5),  # same storage, other offset
        "half": torch.randn(6, generator=g).half(),
        "bfloat16": torch.randn(6, generator=g).bfloat16(),
        "double": torch.randn(2, 2, generator=g, dtype=torch.float64),
        "int64": torch.arange(-3, 9),
        "int32": torch.tensor([1, -2, 3], dtype=torch.int32),
        "uint8": torch.tensor([0, 7, 255], dtype=torch.uint8),
        "bool": torch.tensor([True, False, True]),
        "scalar": torch.tensor(2.5),
        "empty": torch.zeros(0, 4),
        "param": torch.nn.Parameter(torch.randn(3, generator=g)),
    }


def _as_numpy(t):
    import torch
    t = t.detach()
    return t.float().numpy() if t.dtype == torch.bfloat16 else t.numpy()


@pytest.fixture(params=sorted(FORMATS))
def saved(request, tmp_path, torch):
    """(path, tensors) of a nested checkpoint written by torch.save in one format."""
    tensors = _tensors()
    path = tmp_path / f"{request.param}.pth"
    torch.save({"model": tensors, "epoch": 7}, path, _use_new_zipfile_serialization=FORMATS[request.param])
    return path, tensors


def test_reads_what_torch_saved(saved, torch):
    path, tensors = saved
    loaded = torch_pickle.load_state_dict(path)
    assert set(loaded) == {f"model.{k}" for k in tensors}  # "epoch" is not a tensor: skipped
    for key, tensor in tensors.items():
        ours = loaded[f"model.{key}"]
        ref = _as_numpy(tensor)
        assert ours.shape == ref.shape, key
        assert ours.dtype == ref.dtype or tensor.dtype == torch.bfloat16, key
        np.testing.assert_array_equal(np.asarray(ours, ref.dtype), ref, err_msg=key)


def test_reads_a_state_dict_without_torch(saved, tmp_path):
    """The reader must work where torch cannot be imported (a None entry in sys.modules blocks it)."""
    path, tensors = saved
    script = (
        "import sys; sys.modules['torch'] = None\n"
        "import numpy as np\n"
        "from rgpkd_jax.torch_pickle import load_state_dict\n"
        f"np.savez({str(tmp_path / 'out.npz')!r}, **load_state_dict({str(path)!r}))\n"
        "assert 'torch' not in [m.split('.')[0] for m, v in sys.modules.items() if v is not None]\n")
    subprocess.run([sys.executable, "-c", script], check=True, cwd=os.path.dirname(os.path.dirname(__file__)))
    loaded = np.load(tmp_path / "out.npz")
    np.testing.assert_array_equal(loaded["model.conv.weight"], _as_numpy(tensors["conv.weight"]))
    np.testing.assert_array_equal(loaded["model.transposed"], _as_numpy(tensors["transposed"]))


class _RunsShellOnLoad:
    """Unpickling this runs a shell command: what a malicious checkpoint does."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_payload_is_live_under_plain_pickle(tmp_path):
    """Guards the next test: the payload really executes when loaded without restrictions."""
    marker = tmp_path / "pwned"
    pickle.loads(pickle.dumps(_RunsShellOnLoad(marker), protocol=2))
    assert marker.exists()


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_refuses_malicious_pickle_without_running_it(fmt, tmp_path, torch):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    torch.save({"weight": torch.ones(2), "payload": _RunsShellOnLoad(marker)}, path,
               _use_new_zipfile_serialization=FORMATS[fmt])
    with pytest.raises(torch_pickle.UnsafePickleError) as err:
        torch_pickle.load_state_dict(path)
    assert not marker.exists()
    message = str(err.value)
    assert str(path) in message and ".system" in message and "Nothing was executed" in message


def test_refuses_a_pickled_module(tmp_path, torch):
    """torch.save(model) (not model.state_dict()) needs torch classes: refused, with the class named."""
    path = tmp_path / "whole_model.pth"
    torch.save(torch.nn.Linear(2, 3), path)
    with pytest.raises(torch_pickle.UnsafePickleError, match=r"torch\.nn\.modules\.linear\.Linear"):
        torch_pickle.load_state_dict(path)


@pytest.mark.parametrize("fmt", sorted(FORMATS))
@pytest.mark.parametrize("keep", [0.01, 0.5, 0.98])
def test_truncated_file_is_a_clear_error(fmt, keep, tmp_path, torch):
    path = tmp_path / f"{fmt}.pth"
    torch.save({"w": torch.randn(64, 64)}, path, _use_new_zipfile_serialization=FORMATS[fmt])
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(torch_pickle.TorchCheckpointError) as err:
        torch_pickle.load_state_dict(path)
    assert str(path) in str(err.value) and "truncated" in str(err.value)
    assert f"{fmt} format" in str(err.value)


def test_corrupt_storage_bytes_fail_the_crc(tmp_path, torch):
    path = tmp_path / "flipped.pth"
    torch.save({"w": torch.zeros(256)}, path)
    with zipfile.ZipFile(path) as archive:
        info = next(i for i in archive.infolist() if i.filename.endswith("data/0"))
    data = bytearray(path.read_bytes())
    name_len, extra_len = struct.unpack_from("<HH", data, info.header_offset + 26)  # local file header
    data[info.header_offset + 30 + name_len + extra_len + 5] ^= 0xFF  # a byte of the stored tensor
    path.write_bytes(bytes(data))
    with pytest.raises(torch_pickle.TorchCheckpointError, match="CRC"):
        torch_pickle.load_state_dict(path)


@pytest.mark.parametrize("content", [b"", b"not a checkpoint at all", pickle.dumps({"a": 1}, protocol=2)])
def test_non_checkpoints_are_a_clear_error(content, tmp_path):
    path = tmp_path / "junk.pth"
    path.write_bytes(content)
    with pytest.raises(torch_pickle.TorchCheckpointError, match=str(path)):
        torch_pickle.load_state_dict(path)


def test_missing_file_names_it(tmp_path, torch):
    with pytest.raises(FileNotFoundError, match="absent.pth"):
        torch_pickle.load_state_dict(tmp_path / "absent.pth")


class _LegacyStorage:
    """A storage for the hand-written legacy file below: a root (view=None) or a view of one."""

    def __init__(self, key, values, view=None):
        self.key, self.values, self.view = key, values, view


class _LegacyTensor:
    def __init__(self, storage, offset, size, stride):
        self.args = (storage, offset, size, stride, False, collections.OrderedDict())

    def __reduce__(self):
        import torch
        return torch._utils._rebuild_tensor_v2, self.args


class _LegacyPickler(pickle.Pickler):
    def persistent_id(self, obj):
        if isinstance(obj, _LegacyStorage):
            import torch
            return ("storage", torch.FloatStorage, obj.key, "cpu", obj.values.size, obj.view)
        return None


def test_legacy_storage_views_match_torch_load(tmp_path, torch):
    """Old torch wrote storage views (view_metadata); modern torch.save never does, so the file is
    written by hand in the legacy layout, and torch.load is the reference."""
    root = _LegacyStorage("1", np.arange(12, dtype="<f4"))
    view = _LegacyStorage("1", root.values, view=("2", 4, 6))  # elements 4..9 of the root
    obj = {"whole": _LegacyTensor(root, 0, (3, 4), (4, 1)),
           "from_view": _LegacyTensor(view, 1, (2, 2), (1, 2))}  # offset and stride within the view
    path = tmp_path / "views.pth"
    with open(path, "wb") as f:
        for header in (torch_pickle.LEGACY_MAGIC_NUMBER, torch_pickle.LEGACY_PROTOCOL_VERSION,
                       {"protocol_version": 1001, "little_endian": True, "type_sizes": {}}):
            pickle.dump(header, f, protocol=2)
        _LegacyPickler(f, protocol=2).dump(obj)
        pickle.dump(["1"], f, protocol=2)
        f.write(struct.pack("<q", root.values.size) + root.values.tobytes())
    expected = torch.load(path, weights_only=False)
    loaded = torch_pickle.load_state_dict(path)
    assert set(loaded) == {"whole", "from_view"}
    for key, tensor in expected.items():
        np.testing.assert_array_equal(loaded[key], tensor.numpy(), err_msg=key)
    np.testing.assert_array_equal(loaded["from_view"], [[5, 7], [6, 8]])  # by hand, for the record
