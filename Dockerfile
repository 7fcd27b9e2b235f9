# The paper's experiment on one NVIDIA GPU (issue 15): Python 3.11, the pinned environment with
# the CUDA build of its torch, the project, and `make reproduce` as the command.
#
#   docker build -t ctxpaper-gpu .
#   docker run --gpus all -v ctxpaper-cache:/opt/ctxpaper/.cache \
#              -v "$PWD/_build:/opt/ctxpaper/_build" ctxpaper-gpu             # make reproduce
#   docker run --gpus all ctxpaper-gpu book PROFILE=smoke                      # another make goal
#   docker run --gpus all --entrypoint .venv/bin/python ctxpaper-gpu -m ctxpaper.device
#
# The base is NVIDIA's CUDA 13.0 runtime, the CUDA of torch 2.13.0+cu130 (requirements-cuda.txt).
# The host needs an NVIDIA driver for CUDA 13 and the NVIDIA Container Toolkit (`--gpus`).
# tests/test_device.py checks this file against requirements.lock and requirements-cuda.txt.
FROM nvidia/cuda:13.0.1-runtime-ubuntu22.04

ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# Python 3.11 from the deadsnakes PPA: Ubuntu 22.04's own python3.11 is a release candidate
# (3.11.0~rc1) without sys.get_int_max_str_digits, which torch uses. git: the commit in the
# provenance of results (build from a clone; .git is not ignored).
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates gpg-agent software-properties-common \
 && add-apt-repository -y ppa:deadsnakes/ppa \
 && apt-get update \
 && apt-get install -y --no-install-recommends python3.11 python3.11-venv make git \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/ctxpaper

# The heavy layer first, so that editing the project does not reinstall it: the CUDA build of
# torch, then the lock, whose torch==2.13.0 that build already satisfies.
COPY requirements.lock requirements-cuda.txt ./
RUN python3.11 -m venv .venv \
 && .venv/bin/python -m pip install -r requirements-cuda.txt \
 && .venv/bin/python -m pip install -r requirements.lock \
 && .venv/bin/python -c "import sys, torch; sys.exit(None if torch.version.cuda else 'torch ' + torch.__version__ + ' is not a CUDA build')"

# `make install` finds the lock installed and adds the project (pip install -e .) and its kernel.
COPY . .
RUN make install PYTHON=python3.11

ENTRYPOINT ["make"]
CMD ["reproduce"]
