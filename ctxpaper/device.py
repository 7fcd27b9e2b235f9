"""Which device trains the §4.1 CNN: a CUDA GPU when there is one, else the CPU.

The paper trained on a GPU; the book's default profiles train on the CPU. This
module decides the device once per process and tells Keras:

* :func:`training_device` chooses ``cuda:0`` when ``torch.cuda.is_available()``
  and ``cpu`` otherwise, unless the environment variable ``CTXPAPER_DEVICE``
  asks for ``cpu``, ``cuda`` or ``cuda:N``. Asking for a GPU that is not there
  is an error naming the installed torch build (a CPU wheel cannot use one);
* :func:`configure` writes the choice to ``KERAS_TORCH_DEVICE``, which Keras'
  torch backend reads **once, when keras is first imported**
  (``keras/src/backend/torch/core.py``: ``DEFAULT_DEVICE`` is that variable,
  else MPS, CUDA, XPU, CPU, in that order). :mod:`ctxpaper.model` calls it
  before it imports keras, so importing any ctxpaper training module is
  enough. If keras was imported earlier on another device, :func:`configure`
  says so instead of training somewhere unexpected;
* :func:`describe` is the one line the chapters print ("Training on cuda:0
  (NVIDIA H100 80GB HBM3, 79 GB), torch 2.13.0+cu130 (CUDA 13.0)").

On Apple silicon Keras alone would pick MPS; ctxpaper trains on the CPU there
(``CTXPAPER_DEVICE`` accepts CUDA devices only), the device its tests cover.

Command line: ``python -m ctxpaper.device [--json]`` prints the choice.
How to install the CUDA build of the pinned torch: the README, "Training on a GPU".

Paper: §4.1 (training). Notebooks: 05_cnn_baseline, 06 and 07 through
:mod:`ctxpaper.model` / :mod:`ctxpaper.train`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass

import torch

__all__ = ["ENV_VAR", "KERAS_ENV_VAR", "DeviceError", "DeviceInfo", "parse_request",
           "training_device", "configure", "describe", "keras_device", "main"]

#: The override: ``cpu``, ``cuda`` (= ``cuda:0``) or ``cuda:N``; unset or empty = automatic.
ENV_VAR = "CTXPAPER_DEVICE"
#: What Keras' torch backend reads at import (keras/src/backend/torch/core.py).
KERAS_ENV_VAR = "KERAS_TORCH_DEVICE"
#: Where the README explains how to get a CUDA build of the pinned torch.
GPU_HELP = "see the README, 'Training on a GPU'"

_REQUEST = re.compile(r"(cpu|cuda)(?::(\d+))?")
_KERAS_CORE = "keras.src.backend.torch.core"


class DeviceError(RuntimeError):
    """The requested device is invalid or absent, or Keras already uses another one."""


@dataclass(frozen=True)
class DeviceInfo:
    """The device chosen for training and what it runs on.

    Attributes
    ----------
    name : str
        ``"cuda:N"`` or ``"cpu"``: the torch device string given to Keras.
    requested : str
        The request it answers: ``"auto"`` or the normalised ``CTXPAPER_DEVICE``.
    torch_version : str
        ``torch.__version__`` (``2.13.0+cpu``, ``2.13.0+cu130``, or ``2.13.0``
        for PyPI's Linux wheel, which is a CUDA build).
    torch_cuda : str or None
        CUDA version torch was built with (``torch.version.cuda``); ``None``
        for a CPU-only build.
    cpu_cores : int
        Cores this process may run on.
    gpu_name : str or None
        ``torch.cuda.get_device_name`` of the chosen GPU.
    gpu_memory_bytes : int or None
        Its total memory.
    gpu_count : int
        CUDA devices torch sees.
    keras_device : str
        The device Keras' torch backend uses (keras imported) or will use
        (from ``KERAS_TORCH_DEVICE`` or its own rule), normalised.
    """

    name: str
    requested: str
    torch_version: str
    torch_cuda: str | None
    cpu_cores: int
    gpu_name: str | None
    gpu_memory_bytes: int | None
    gpu_count: int
    keras_device: str

    @property
    def is_cuda(self) -> bool:
        """Whether training runs on a CUDA GPU."""
        return self.name.startswith("cuda")

    @property
    def keras_uses_it(self) -> bool:
        """Whether Keras places its tensors on :attr:`name`."""
        return self.keras_device == self.name

    def as_dict(self) -> dict:
        """Plain fields plus the derived ones, for JSON and provenance headers."""
        return {**dataclasses.asdict(self), "is_cuda": self.is_cuda,
                "keras_uses_it": self.keras_uses_it, "description": describe(self)}


def parse_request(value: str | None) -> str:
    """Normalise a device request: ``"auto"``, ``"cpu"`` or ``"cuda:N"``.

    Parameters
    ----------
    value : str or None
        ``None`` or blank means automatic; ``cuda`` means ``cuda:0``; case and
        surrounding spaces are ignored.

    Raises
    ------
    DeviceError
        Any other value, naming :data:`ENV_VAR` and the accepted forms.
    """
    if value is None or not value.strip():
        return "auto"
    text = value.strip().lower()
    m = _REQUEST.fullmatch(text)
    if m is None or (m.group(1) == "cpu" and m.group(2) is not None):
        raise DeviceError(f"{ENV_VAR}={value!r} is not a device: use 'cpu', 'cuda' or 'cuda:N' "
                          "(N = GPU index), or leave it unset to use a GPU when there is one")
    return "cpu" if m.group(1) == "cpu" else f"cuda:{int(m.group(2) or 0)}"


def _normalise(device: str) -> str:
    try:
        d = torch.device(device)
    except RuntimeError as exc:
        raise DeviceError(f"{KERAS_ENV_VAR}={device!r} is not a torch device: {exc}") from None
    return f"{d.type}:{d.index or 0}" if d.type == "cuda" else d.type


def keras_device() -> str:
    """The device Keras' torch backend uses, or will use once keras is imported.

    Read from the backend itself when it is loaded (``get_device()``), else
    from ``KERAS_TORCH_DEVICE``, else by the backend's own rule (MPS, CUDA,
    XPU, CPU). ``"cuda"`` is reported as ``"cuda:0"``.
    """
    core = sys.modules.get(_KERAS_CORE)
    if core is not None:
        return _normalise(str(core.get_device()))
    if os.environ.get(KERAS_ENV_VAR):
        return _normalise(os.environ[KERAS_ENV_VAR])
    if torch.backends.mps.is_available():
        return "mps"
    if torch.cuda.is_available():
        return "cuda:0"
    if hasattr(torch, "xpu") and torch.xpu.is_available():
        return "xpu"
    return "cpu"


def _cpu_cores() -> int:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def training_device(request: str | None = None) -> DeviceInfo:
    """Choose the training device: a CUDA GPU when there is one, else the CPU.

    Parameters
    ----------
    request : str, optional
        ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"auto"``; by default the
        value of ``CTXPAPER_DEVICE`` (unset: automatic).

    Returns
    -------
    DeviceInfo

    Raises
    ------
    DeviceError
        An invalid request, or a CUDA device that this torch cannot use: a
        CPU-only build (named, with where the README explains the CUDA
        install), no visible GPU, or an index past the last GPU.
    """
    wanted = parse_request(os.environ.get(ENV_VAR) if request is None else request)
    asked = f"{ENV_VAR}={wanted}" if request is None else f"device {wanted!r}"
    available = torch.cuda.is_available()
    count = torch.cuda.device_count() if available else 0
    if wanted == "auto":
        name = "cuda:0" if available else "cpu"
    else:
        name = wanted
    if name.startswith("cuda"):
        build = f"torch {torch.__version__}"
        if torch.version.cuda is None:
            raise DeviceError(f"{asked} asks for a GPU, but {build} has no CUDA "
                              f"(a CPU-only build): {GPU_HELP}")
        if not available:
            raise DeviceError(f"{asked} asks for a GPU, but {build} (CUDA "
                              f"{torch.version.cuda}) sees none: check `nvidia-smi` and that the "
                              f"driver supports CUDA {torch.version.cuda}, or unset {ENV_VAR}; {GPU_HELP}")
        index = int(name.split(":")[1])
        if index >= count:
            raise DeviceError(f"{asked}: torch sees {count} GPU(s), "
                              f"cuda:0 to cuda:{count - 1}")
        gpu_name = str(torch.cuda.get_device_name(index))
        gpu_memory = int(torch.cuda.get_device_properties(index).total_memory)
    else:
        gpu_name = gpu_memory = None
    return DeviceInfo(name=name, requested=wanted, torch_version=str(torch.__version__),
                      torch_cuda=torch.version.cuda, cpu_cores=_cpu_cores(), gpu_name=gpu_name,
                      gpu_memory_bytes=gpu_memory, gpu_count=count, keras_device=keras_device())


def configure(request: str | None = None) -> DeviceInfo:
    """Choose the device and make Keras' torch backend use it.

    Must run before the first ``import keras`` of the process (Keras reads
    ``KERAS_TORCH_DEVICE`` once, at import); :mod:`ctxpaper.model` calls it
    before importing keras. Called again later it only checks.

    Parameters
    ----------
    request : str, optional
        As for :func:`training_device`.

    Returns
    -------
    DeviceInfo
        With :attr:`DeviceInfo.keras_uses_it` true.

    Raises
    ------
    DeviceError
        As :func:`training_device`; or keras was already imported and uses
        another device; or ``KERAS_TORCH_DEVICE`` is set to another device
        (set ``CTXPAPER_DEVICE`` instead).
    """
    info = training_device(request)
    if _KERAS_CORE not in sys.modules:
        preset = os.environ.get(KERAS_ENV_VAR)
        if preset and _normalise(preset) != info.name:
            raise DeviceError(f"{KERAS_ENV_VAR}={preset!r} disagrees with ctxpaper's choice "
                              f"{info.name!r}: set {ENV_VAR} instead and unset {KERAS_ENV_VAR}")
        os.environ[KERAS_ENV_VAR] = info.name
        info = dataclasses.replace(info, keras_device=keras_device())
    if not info.keras_uses_it:
        raise DeviceError(f"keras was imported before ctxpaper chose the device and places tensors on "
                          f"{info.keras_device!r}, not {info.name!r}: import ctxpaper.model (or call "
                          f"ctxpaper.device.configure()) before keras, or set {ENV_VAR}={info.keras_device}")
    return info


def describe(info: DeviceInfo | None = None) -> str:
    """One line for the chapters: the device, its size, and the torch build.

    ``Training on cuda:0 (NVIDIA H100 80GB HBM3, 79 GB), torch 2.13.0+cu130 (CUDA 13.0)``
    or ``Training on the CPU (2 cores), torch 2.13.0+cpu``.
    """
    info = training_device() if info is None else info
    if info.is_cuda:
        where = f"{info.name} ({info.gpu_name}, {info.gpu_memory_bytes / 2**30:.0f} GB)"
    else:
        where = f"the CPU ({info.cpu_cores} core{'s' if info.cpu_cores != 1 else ''})"
    build = f"torch {info.torch_version}"
    if info.torch_cuda is not None:
        build += f" (CUDA {info.torch_cuda}{'' if info.is_cuda else ' build, no GPU in use'})"
    line = f"Training on {where}, {build}"
    if not info.keras_uses_it:
        line += f"; Keras is set to {info.keras_device}"
    return line


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m ctxpaper.device [--json]``: print the training device."""
    parser = argparse.ArgumentParser(prog="python -m ctxpaper.device",
                                     description="Print the device ctxpaper trains on "
                                                 f"(override with {ENV_VAR}=cpu|cuda|cuda:N).")
    parser.add_argument("--json", action="store_true", help="print every field as JSON")
    args = parser.parse_args(argv)
    try:
        info = configure()  # what a training in this environment would use
    except DeviceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(info.as_dict(), indent=2) if args.json else describe(info))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
