"""The training device (ctxpaper.device), the CUDA install option and the GPU Dockerfile.

There is no GPU here: a CUDA machine is simulated by replacing the torch.cuda
queries the module makes (is_available, device_count, get_device_name,
get_device_properties) and torch's build strings. Whether Keras really reads
the choice is checked in fresh interpreters, where Keras' torch backend is
imported after ctxpaper configured it, by asking the backend's own
``get_device()`` (what every Keras tensor is created on) — nothing is
allocated on the fake GPU.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from ctxpaper import device
from ctxpaper import model as M  # configures the device and imports keras (CPU here)
from ctxpaper import PROJECT_ROOT

import keras  # noqa: E402  (after ctxpaper.model)

H100 = "NVIDIA H100 80GB HBM3"
H100_BYTES = 85_045_362_688  # torch's total_memory of an H100 80GB HBM3: 79.2 GiB


@pytest.fixture
def no_device_env(monkeypatch):
    monkeypatch.delenv(device.ENV_VAR, raising=False)


def fake_cuda(monkeypatch, count: int = 1, cuda: str = "13.0", version: str = "2.13.0+cu130") -> list[int]:
    """Make torch report ``count`` H100s; returns the indices the module asked about."""
    asked: list[int] = []

    def name(index: int) -> str:
        asked.append(index)
        if not 0 <= index < count:
            raise AssertionError(f"asked for GPU {index} of {count}")
        return f"{H100} #{index}"

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: count)
    monkeypatch.setattr(torch.cuda, "get_device_name", name)
    monkeypatch.setattr(torch.cuda, "get_device_properties",
                        lambda index: SimpleNamespace(total_memory=H100_BYTES + index))
    monkeypatch.setattr(torch.version, "cuda", cuda)
    monkeypatch.setattr(torch, "__version__", version)
    return asked


def fake_cpu_build(monkeypatch, version: str = "2.13.0+cpu") -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    monkeypatch.setattr(torch.version, "cuda", None)
    monkeypatch.setattr(torch, "__version__", version)


# ----------------------------------------------------------------------------
# requests
# ----------------------------------------------------------------------------

@pytest.mark.parametrize("value, expected", [
    (None, "auto"), ("", "auto"), ("  ", "auto"), ("cpu", "cpu"), (" CPU ", "cpu"),
    ("cuda", "cuda:0"), ("CUDA:0", "cuda:0"), ("cuda:3", "cuda:3"),
])
def test_parse_request_normalises(value, expected):
    assert device.parse_request(value) == expected


@pytest.mark.parametrize("value", ["gpu", "cuda:", "cuda:-1", "cuda:x", "cpu:0", "mps", "cuda0", "auto"])
def test_parse_request_rejects_other_values_naming_the_variable(value):
    with pytest.raises(device.DeviceError, match=rf"{device.ENV_VAR}=.*'cpu', 'cuda' or 'cuda:N'"):
        device.parse_request(value)


# ----------------------------------------------------------------------------
# the choice, on a simulated CUDA machine and on a CPU build
# ----------------------------------------------------------------------------

def test_auto_picks_the_first_gpu_when_cuda_is_available(monkeypatch, no_device_env):
    asked = fake_cuda(monkeypatch, count=2)
    info = device.training_device()
    assert (info.name, info.requested, info.is_cuda) == ("cuda:0", "auto", True)
    assert asked == [0]
    assert info.gpu_name == f"{H100} #0"
    assert info.gpu_memory_bytes == H100_BYTES
    assert (info.gpu_count, info.torch_version, info.torch_cuda) == (2, "2.13.0+cu130", "13.0")


def test_auto_picks_the_cpu_without_cuda(monkeypatch, no_device_env):
    fake_cpu_build(monkeypatch)
    info = device.training_device()
    assert (info.name, info.is_cuda, info.gpu_name, info.gpu_memory_bytes) == ("cpu", False, None, None)
    assert info.cpu_cores == len(os.sched_getaffinity(0))


def test_env_override_selects_another_gpu_or_the_cpu(monkeypatch):
    asked = fake_cuda(monkeypatch, count=2)
    monkeypatch.setenv(device.ENV_VAR, "cuda:1")
    info = device.training_device()
    assert (info.name, info.requested, info.gpu_name) == ("cuda:1", "cuda:1", f"{H100} #1")
    assert info.gpu_memory_bytes == H100_BYTES + 1
    monkeypatch.setenv(device.ENV_VAR, "cpu")
    info = device.training_device()
    assert (info.name, info.gpu_name) == ("cpu", None)
    assert asked == [1]  # the CPU choice did not query a GPU


def test_an_explicit_request_wins_over_the_environment(monkeypatch):
    fake_cuda(monkeypatch, count=1)
    monkeypatch.setenv(device.ENV_VAR, "cpu")
    assert device.training_device("cuda").name == "cuda:0"


def test_invalid_env_value_is_a_clear_error(monkeypatch):
    fake_cuda(monkeypatch)
    monkeypatch.setenv(device.ENV_VAR, "gpu0")
    with pytest.raises(device.DeviceError, match=r"CTXPAPER_DEVICE='gpu0' is not a device"):
        device.training_device()


def test_asking_for_cuda_on_a_cpu_build_names_the_build_and_the_readme(monkeypatch):
    fake_cpu_build(monkeypatch)
    monkeypatch.setenv(device.ENV_VAR, "cuda")
    with pytest.raises(device.DeviceError) as err:
        device.training_device()
    msg = str(err.value)
    assert "CTXPAPER_DEVICE=cuda:0" in msg
    assert "torch 2.13.0+cpu has no CUDA" in msg
    assert "Training on a GPU" in msg


def test_asking_for_cuda_with_a_cuda_build_but_no_gpu_says_so(monkeypatch):
    fake_cpu_build(monkeypatch, version="2.13.0")
    monkeypatch.setattr(torch.version, "cuda", "13.0")  # PyPI's Linux wheel, no GPU visible
    with pytest.raises(device.DeviceError, match=r"torch 2\.13\.0 \(CUDA 13\.0\) sees none.*nvidia-smi"):
        device.training_device("cuda")


def test_asking_for_a_gpu_past_the_last_one_is_an_error(monkeypatch):
    fake_cuda(monkeypatch, count=2)
    with pytest.raises(device.DeviceError, match=r"torch sees 2 GPU\(s\), cuda:0 to cuda:1"):
        device.training_device("cuda:2")


# ----------------------------------------------------------------------------
# the line the chapters print
# ----------------------------------------------------------------------------

def test_describe_a_gpu(monkeypatch, no_device_env):
    fake_cuda(monkeypatch)
    info = dataclasses.replace(device.training_device(), keras_device="cuda:0")
    assert device.describe(info) == f"Training on cuda:0 ({H100} #0, 79 GB), torch 2.13.0+cu130 (CUDA 13.0)"


def test_describe_the_cpu(monkeypatch, no_device_env):
    fake_cpu_build(monkeypatch)
    info = device.training_device()
    cores = len(os.sched_getaffinity(0))
    expected = f"Training on the CPU ({cores} core{'s' if cores != 1 else ''}), torch 2.13.0+cpu"
    assert device.describe(info) == expected


def test_describe_a_cuda_build_on_the_cpu_and_a_keras_mismatch(monkeypatch, no_device_env):
    fake_cpu_build(monkeypatch, version="2.13.0")
    monkeypatch.setattr(torch.version, "cuda", "13.0")
    info = device.training_device()
    assert device.describe(info).endswith("torch 2.13.0 (CUDA 13.0 build, no GPU in use)")
    other = dataclasses.replace(info, keras_device="mps")
    assert not other.keras_uses_it
    assert device.describe(other).endswith("; Keras is set to mps")


# ----------------------------------------------------------------------------
# Keras: this process (keras imported on the CPU) and fresh interpreters
# ----------------------------------------------------------------------------

def test_this_machine_trains_on_the_cpu_and_keras_agrees(no_device_env):
    info = device.configure()
    if torch.cuda.is_available():  # pragma: no cover - a machine with a GPU
        pytest.skip("this machine has a GPU")
    assert info.name == "cpu" and info.keras_uses_it
    assert os.environ[device.KERAS_ENV_VAR] == "cpu"
    from keras.src.backend.torch import core
    assert core.get_device() == "cpu"


def test_a_tiny_training_step_runs_on_the_chosen_device(no_device_env):
    info = device.configure()
    model = M.compile_model(M.build_model(frames=16, seed=0))
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4, 16, M.N_MELS, 1)).astype(np.float32)
    y = M.pack_targets((rng.random((4, M.N_CONTEXTS)) < 0.3).astype(np.float32))
    before = [keras.ops.convert_to_numpy(v).copy() for v in model.trainable_variables]
    loss = float(model.train_on_batch(x, y))
    assert np.isfinite(loss) and loss > 0
    assert any(not np.array_equal(b, keras.ops.convert_to_numpy(v))
               for b, v in zip(before, model.trainable_variables))
    assert {str(v.value.device) for v in model.variables} == {info.name}


def test_configure_refuses_when_keras_already_uses_another_device(monkeypatch, no_device_env):
    fake_cuda(monkeypatch)  # a GPU appears, but keras was imported on the CPU
    with pytest.raises(device.DeviceError, match=r"keras was imported before .* 'cpu', not 'cuda:0'"):
        device.configure()


_PROBE = """
import json, os, sys, types
import torch
count = int(os.environ.pop("FAKE_GPUS"))
torch.cuda.is_available = lambda: True
torch.cuda.device_count = lambda: count
torch.cuda.get_device_name = lambda i: "Fake GPU %d" % i
torch.cuda.get_device_properties = lambda i: types.SimpleNamespace(total_memory=16 * 2**30)
torch.version.cuda = "13.0"
torch.__version__ = "2.13.0+cu130"
assert "keras" not in sys.modules
from ctxpaper import model, device
from keras.src.backend.torch import core
print(json.dumps({"keras": core.get_device(), "line": device.describe(device.configure())}))
"""


def _fresh_env(**extra: str) -> dict[str, str]:
    """This environment without any device setting, with this checkout importable."""
    env = {k: v for k, v in os.environ.items() if k not in (device.ENV_VAR, device.KERAS_ENV_VAR)}
    return {**env, "PYTHONPATH": str(PROJECT_ROOT), **extra}


def _probe(env_device: str | None) -> dict:
    env = _fresh_env(FAKE_GPUS="2")
    if env_device is not None:
        env[device.ENV_VAR] = env_device
    out = subprocess.run([sys.executable, "-c", _PROBE], env=env, capture_output=True, text=True,
                         timeout=300, check=False)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_keras_places_tensors_on_the_gpu_ctxpaper_chose():
    # Keras' own rule would say "cuda"; ctxpaper's choice of the second GPU must win.
    got = _probe("cuda:1")
    assert got["keras"] == "cuda:1"
    assert got["line"] == "Training on cuda:1 (Fake GPU 1, 16 GB), torch 2.13.0+cu130 (CUDA 13.0)"


def test_keras_stays_on_the_cpu_when_asked_on_a_gpu_machine():
    assert _probe("cpu")["keras"] == "cpu"


def test_module_command_line_prints_the_line_or_the_error():
    env = _fresh_env()
    ok = subprocess.run([sys.executable, "-m", "ctxpaper.device", "--json"], env=env,
                        capture_output=True, text=True, timeout=120, check=False)
    assert ok.returncode == 0, ok.stderr
    fields = json.loads(ok.stdout)
    assert fields["description"] == device.describe(device.training_device())
    assert fields["keras_uses_it"] is True
    bad = subprocess.run([sys.executable, "-m", "ctxpaper.device"], env={**env, device.ENV_VAR: "gpu"},
                         capture_output=True, text=True, timeout=120, check=False)
    assert bad.returncode == 2 and "CTXPAPER_DEVICE='gpu' is not a device" in bad.stderr


# ----------------------------------------------------------------------------
# the CUDA install option and the Dockerfile pin the lock's torch
# ----------------------------------------------------------------------------

def _lock_torch() -> str:
    lock = (PROJECT_ROOT / "requirements.lock").read_text()
    return re.search(r"^torch==(\S+)$", lock, re.M).group(1)


def _cuda_requirement() -> tuple[str, str, str]:
    """(torch version, build, index URL) of requirements-cuda.txt."""
    lines = [ln.strip() for ln in (PROJECT_ROOT / "requirements-cuda.txt").read_text().splitlines()
             if ln.strip() and not ln.lstrip().startswith("#")]
    pins = [re.fullmatch(r"torch==([0-9.]+)\+(cu\d+)", ln) for ln in lines]
    pins = [m for m in pins if m]
    indexes = [ln.split()[1] for ln in lines if ln.startswith("--index-url")]
    assert len(pins) == 1 and len(indexes) == 1, lines
    assert len(lines) == 2, f"requirements-cuda.txt holds only the CUDA torch: {lines}"
    return pins[0].group(1), pins[0].group(2), indexes[0]


def _make(*args: str) -> subprocess.CompletedProcess:
    # -n prints the recipes without running them: nothing is installed.
    return subprocess.run(["make", "-n", "--no-print-directory", "-C", str(PROJECT_ROOT), *args], capture_output=True,
                          text=True, timeout=60, check=False)


def test_cuda_requirement_pins_the_lock_torch_from_its_own_index():
    version, build, index = _cuda_requirement()
    assert version == _lock_torch(), "requirements-cuda.txt and requirements.lock pin different torch"
    assert index == f"https://download.pytorch.org/whl/{build}"


def test_make_install_cuda_installs_that_torch_and_accepts_other_builds():
    version, build, _ = _cuda_requirement()
    default = _make("install-cuda")
    assert default.returncode == 0, default.stderr
    assert (f'--index-url https://download.pytorch.org/whl/{build} "torch=={version}+{build}"'
            in default.stdout)
    assert default.stdout.rstrip().endswith("-m ctxpaper.device")
    other = _make("install-cuda", "TORCH_CUDA=cu126")
    assert f'whl/cu126 "torch=={version}+cu126"' in other.stdout
    wrong = _make("install-cuda", "TORCH_CUDA=cu128")
    assert wrong.returncode != 0
    assert "TORCH_CUDA=cu128 is not a CUDA build of torch" in wrong.stderr


def test_make_install_and_book_do_not_touch_the_cuda_build():
    for goal in ("install", "book", "test"):
        out = _make(goal)
        assert out.returncode == 0, out.stderr
        assert "download.pytorch.org" not in out.stdout and "requirements-cuda" not in out.stdout


def _dockerfile() -> list[str]:
    """Instructions of the Dockerfile, continuation lines joined, comments dropped."""
    text = (PROJECT_ROOT / "Dockerfile").read_text()
    lines = [ln for ln in text.splitlines() if not ln.lstrip().startswith("#")]
    return [" ".join(s.split()) for s in re.sub(r"\\\n", " ", "\n".join(lines)).splitlines() if s.strip()]


def test_dockerfile_matches_the_cuda_build_python_and_lock():
    steps = _dockerfile()
    _, build, _ = _cuda_requirement()
    froms = [s.split()[1] for s in steps if s.startswith("FROM ")]
    assert len(froms) == 1
    m = re.fullmatch(r"nvidia/cuda:(\d+)\.(\d+)\.\d+-(?:cudnn-)?runtime-ubuntu\d+\.\d+", froms[0])
    assert m, f"not an NVIDIA CUDA runtime image: {froms[0]}"
    assert f"cu{m.group(1)}{m.group(2)}" == build, f"{froms[0]} does not match torch's {build}"
    runs = " && ".join(s for s in steps if s.startswith("RUN "))
    assert "python3.11 -m venv .venv" in runs
    cuda_at = runs.index("pip install -r requirements-cuda.txt")
    lock_at = runs.index("pip install -r requirements.lock")
    assert cuda_at < lock_at, "the CUDA torch goes in first, so the lock does not fetch another torch"
    assert "make install PYTHON=python3.11" in runs  # pip install -e . and the kernel, as make does
    assert 'ENTRYPOINT ["make"]' in steps and 'CMD ["reproduce"]' in steps
    copied = [s for s in steps if s.startswith("COPY ")]
    assert copied[0].split()[1:-1] == ["requirements.lock", "requirements-cuda.txt"]


def test_dockerignore_keeps_local_environments_and_builds_out():
    ignored = {ln.strip() for ln in (PROJECT_ROOT / ".dockerignore").read_text().splitlines()
               if ln.strip() and not ln.startswith("#")}
    assert {".venv", ".cache", "_build"} <= ignored
    assert "requirements.lock" not in ignored and "requirements-cuda.txt" not in ignored
