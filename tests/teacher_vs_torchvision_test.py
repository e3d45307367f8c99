"""torchvision .pth -> Flax: features equal torchvision's; layouts, errors, cache, download and CLI."""

import hashlib
import logging
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from rgpkd_jax import teacher, torch_state


REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RTOL = 1e-5  # ||ours - torch|| / ||torch||, fp32


def _randomised_torchvision(arch: str, seed: int) -> "torch.nn.Module":
    """torchvision's model with random weights and BN statistics far from (0, 1), in eval mode."""
    import torch
    import torchvision
    torch.manual_seed(seed)
    model = getattr(torchvision.models, arch)(weights=None).eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0.0, 0.2)
                m.running_mean.normal_(0.0, 0.2)
                m.running_var.uniform_(0.5, 2.0)
                m.num_batches_tracked.fill_(123)
    return model


def _torch_taps(model, x_nchw: np.ndarray) -> list[np.ndarray]:
    import torch
    with torch.no_grad():
        h = model.maxpool(model.relu(model.bn1(model.conv1(torch.from_numpy(x_nchw)))))
        out = []
        for layer in (model.layer1, model.layer2, model.layer3):
            h = layer(h)
            out.append(h.numpy())
    return out


def _flax_taps(resnet, x_nchw: np.ndarray) -> list[np.ndarray]:
    with jax.default_matmul_precision("highest"):  # true fp32 on GPUs too (no TF32)
        features = resnet(jnp.asarray(x_nchw.transpose(0, 2, 3, 1)))
    return [np.asarray(f).transpose(0, 3, 1, 2) for f in features]


def _relative_errors(ours, refs):
    return [float(np.linalg.norm(o - r) / np.linalg.norm(r)) for o, r in zip(ours, refs)]


def _assert_same_features(resnet, model, sizes, batch):
    rng = np.random.default_rng(0)
    for size in sizes:
        x = rng.standard_normal((batch, 3, size, size), dtype=np.float32)
        refs = _torch_taps(model, x)
        ours = _flax_taps(resnet, x)
        assert [o.shape for o in ours] == [r.shape for r in refs]
        errors = _relative_errors(ours, refs)
        assert max(errors) < RTOL, (size, errors)


@pytest.fixture(scope="module")
def resnet18_pth(tmp_path_factory, torch):
    model = _randomised_torchvision("resnet18", seed=1)
    path = tmp_path_factory.mktemp("r18") / "resnet18.pth"
    torch.save(model.state_dict(), path)  # zip format
    return model, path


# --- parity with torchvision ------------------------------------------------------------------


def test_resnet18_zip_features_match_torchvision(resnet18_pth):
    model, path = resnet18_pth
    resnet = teacher.load_teacher("resnet18", str(path), num_layers=3)
    _assert_same_features(resnet, model, sizes=(64, 96), batch=2)


def test_wide_resnet50_2_legacy_features_match_torchvision(tmp_path, torch):
    model = _randomised_torchvision("wide_resnet50_2", seed=2)
    path = tmp_path / "wide_resnet50_2.pth"
    torch.save(model.state_dict(), path, _use_new_zipfile_serialization=False)  # pre-1.6 format
    resnet = teacher.load_teacher("wide_resnet50_2", str(path), num_layers=3)
    _assert_same_features(resnet, model, sizes=(64, 96), batch=1)


# --- the generic mapping ----------------------------------------------------------------------


class _Holder(nnx.Module):
    def __init__(self, layer):
        self.layer = layer


@pytest.mark.parametrize("kernel,stride", [(2, 2), (3, 2), (3, 1)])
@pytest.mark.parametrize("transpose_kernel", [False, True])
def test_conv_transpose_matches_torch(kernel, stride, transpose_kernel, torch):
    torch.manual_seed(kernel * 10 + stride)
    ref = torch.nn.ConvTranspose2d(5, 3, kernel, stride=stride, bias=True)
    ours = _Holder(nnx.ConvTranspose(5, 3, (kernel, kernel), strides=(stride, stride), padding="VALID",
                                     transpose_kernel=transpose_kernel, rngs=nnx.Rngs(0)))
    state = {f"layer.{k}": v.detach().numpy() for k, v in ref.state_dict().items()}
    torch_state.assign_torch_state_dict(ours, state)
    x = np.random.default_rng(0).standard_normal((2, 5, 7, 6), dtype=np.float32)
    with torch.no_grad():
        expected = ref(torch.from_numpy(x)).numpy()
    with jax.default_matmul_precision("highest"):
        got = np.asarray(ours.layer(jnp.asarray(x.transpose(0, 2, 3, 1)))).transpose(0, 3, 1, 2)
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_linear_and_prefix_map_match_torch(torch):
    torch.manual_seed(0)
    ref = torch.nn.Linear(6, 4)
    ours = _Holder(nnx.Linear(6, 4, rngs=nnx.Rngs(0)))
    # The torch keys live under "head." in the file; prefix_map sends them to our "layer".
    state = {f"head.{k}": v.detach().numpy() for k, v in ref.state_dict().items()}
    state["other.weight"] = np.zeros(3, np.float32)
    torch_state.assign_torch_state_dict(ours, state, prefix_map={"head.": "layer."}, ignore=("other.*",))
    x = np.random.default_rng(1).standard_normal((3, 6), dtype=np.float32)
    with torch.no_grad():
        expected = ref(torch.from_numpy(x)).numpy()
    with jax.default_matmul_precision("highest"):
        got = np.asarray(ours.layer(jnp.asarray(x)))
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_one_error_lists_missing_unexpected_and_misshaped(resnet18_pth):
    model, path = resnet18_pth
    state = {k: v.numpy() for k, v in model.state_dict().items()}
    del state["layer1.0.bn1.running_var"]
    state["layer1.0.extra.weight"] = np.zeros(3, np.float32)
    state["layer2.0.conv1.weight"] = np.zeros((128, 64, 1, 1), np.float32)
    resnet = teacher.load_teacher("resnet18", str(path), num_layers=3)
    before = np.asarray(resnet.conv1.kernel[...]).copy()
    with pytest.raises(torch_state.StateDictMismatchError) as err:
        torch_state.assign_torch_state_dict(resnet, state, ignore=("fc.*", "layer4.*"), source="test.pth")
    message = str(err.value)
    assert "test.pth" in message and "1 missing, 1 unexpected, 1 mis-shaped" in message
    assert "layer1.0.bn1.running_var (64,)" in message
    assert "layer1.0.extra.weight (3,)" in message
    assert "layer2.0.conv1.weight: file (128, 64, 1, 1), model expects (128, 64, 3, 3)" in message
    np.testing.assert_array_equal(np.asarray(resnet.conv1.kernel[...]), before)  # left unchanged


def test_wrong_architecture_is_named(resnet18_pth):
    _, path = resnet18_pth
    with pytest.raises(torch_state.StateDictMismatchError, match="holds resnet18 weights, not resnet34"):
        teacher.load_teacher("resnet34", str(path))


# --- converted checkpoints, cache, download, CLI ----------------------------------------------


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("RGPKD_JAX_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_missing_imagenet_weights_give_the_command(cache):
    with pytest.raises(FileNotFoundError) as err:
        teacher.load_teacher("wide_resnet50_2", "imagenet")
    assert "python -m rgpkd_jax.convert --arch wide_resnet50_2 --download" in str(err.value)
    assert str(cache) in str(err.value)


def test_random_teacher_is_logged_loudly(caplog):
    with caplog.at_level(logging.WARNING):
        resnet = teacher.load_teacher("resnet18", "random", num_layers=1)
    assert "RANDOM weights" in caplog.text and "MEANINGLESS" in caplog.text
    assert set(resnet.tap_channels) == {"layer1"}


def _serve_as_official(folder, arch, path, monkeypatch):
    """Makes `--download` fetch `path` from a file:// folder, under a name carrying its sha256 prefix."""
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    name = f"{arch}-{digest[:8]}.pth"
    folder.mkdir(exist_ok=True)
    (folder / name).write_bytes(path.read_bytes())
    monkeypatch.setattr(teacher, "TORCHVISION_BASE_URL", folder.as_uri() + "/")
    monkeypatch.setitem(teacher.IMAGENET_WEIGHTS, arch, name)
    return name


def test_download_convert_then_imagenet_teacher(resnet18_pth, cache, tmp_path, monkeypatch):
    model, path = resnet18_pth
    name = _serve_as_official(tmp_path / "server", "resnet18", path, monkeypatch)
    written = teacher.convert_torchvision("resnet18", download=True)
    assert written == teacher.imagenet_checkpoint_dir("resnet18")
    assert (cache / "torchvision" / name).read_bytes() == path.read_bytes()
    assert not [p for p in cache.rglob("*") if p.name.endswith((".part", ".tmp", ".old"))]
    resnet = teacher.load_teacher("resnet18", "imagenet", num_layers=3)
    assert not hasattr(resnet, "layer4")
    _assert_same_features(resnet, model, sizes=(64,), batch=1)
    assert teacher.convert_torchvision("resnet18", download=True) is None  # already there: nothing to do


def test_download_with_wrong_checksum_saves_nothing(resnet18_pth, cache, tmp_path, monkeypatch):
    _, path = resnet18_pth
    name = _serve_as_official(tmp_path / "server", "resnet18", path, monkeypatch)
    (tmp_path / "server" / name).write_bytes(b"tampered" + path.read_bytes())
    with pytest.raises(teacher.DownloadError, match="does not start with"):
        teacher.download_weights("resnet18")
    assert not list((cache / "torchvision").iterdir())


def test_download_failure_explains_the_offline_route(cache, tmp_path, monkeypatch):
    monkeypatch.setattr(teacher, "TORCHVISION_BASE_URL", (tmp_path / "nowhere").as_uri() + "/")
    with pytest.raises(teacher.DownloadError,
                       match="python -m rgpkd_jax.convert --arch resnet18 --pth resnet18-f37072fd.pth"):
        teacher.download_weights("resnet18")


def _cli(*args, env_cache):
    env = dict(os.environ, RGPKD_JAX_CACHE=str(env_cache), PYTHONPATH=REPO)
    return subprocess.run([sys.executable, "-m", "rgpkd_jax.convert", *args], capture_output=True,
                          text=True, env=env, cwd=REPO)


def test_cli_converts_a_pth(resnet18_pth, tmp_path):
    model, path = resnet18_pth
    out = tmp_path / "teacher"
    result = _cli("--arch", "resnet18", "--pth", str(path), "--output", str(out), env_cache=tmp_path)
    assert result.returncode == 0, result.stderr
    assert str(out) in result.stdout and f"--config.teacher.weights={out}" in result.stdout
    _assert_same_features(teacher.load_teacher("resnet18", str(out)), model, sizes=(64,), batch=1)

    result = _cli("--arch", "resnet18", "--pth", str(tmp_path / "absent.pth"),
                  "--output", str(tmp_path / "other"), env_cache=tmp_path)
    assert result.returncode != 0 and "absent.pth" in result.stderr and "Traceback" not in result.stderr


def test_cli_help(tmp_path):
    result = _cli("--help", env_cache=tmp_path)
    assert result.returncode in (0, 1), result.stderr  # absl's --help exits with status 1
    assert "Traceback" not in result.stderr
    for flag in ("--arch", "--pth", "--[no]download", "--output", "--[no]overwrite"):
        assert flag in result.stdout, flag
