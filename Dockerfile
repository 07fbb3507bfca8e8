# syntax=docker/dockerfile:1
# smes-rec image for `torchx run -s kubernetes` (and `-s local_docker`). It installs the package the way the README
# does, in a virtual environment on PATH, with the checkout as the working directory, so the components' relative
# paths (apps/train.py, configs/...) resolve exactly as they do in a checkout.
#
#   CPU:   docker build -t smes-rec:0.1.0-cpu .
#   CUDA:  docker build --build-arg VARIANT=cuda --build-arg CUDA_TAG=cu128 -t smes-rec:0.1.0-cuda .
#
# CUDA_TAG is the PyTorch wheel index tag (cu126, cu128, ...) matching the cluster's drivers. The CUDA variant needs
# no CUDA base image: the torch and fbgemm-gpu wheels bring their CUDA libraries, the node's runtime the driver.
ARG PYTHON_IMAGE=python:3.11-slim
FROM ${PYTHON_IMAGE}

ARG VARIANT=cpu
ARG CUDA_TAG=cu128
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONUNBUFFERED=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH

RUN python3 -m venv /opt/venv && pip install --upgrade pip

# torch and FBGEMM first (the large, rarely changing layer), as in the README's "Installing" section:
#   cpu:  the fbgemm-gpu-cpu shim; torch 2.13.0 comes from the CPU index first, because the default index's Linux
#         wheel is the multi-GB CUDA build.
#   cuda: torch 2.13.0 and the real fbgemm-gpu 1.8.0 from the same CUDA index.
WORKDIR /workspace/smes-rec
COPY tools/fbgemm-gpu-cpu-shim tools/fbgemm-gpu-cpu-shim
RUN set -eux; \
    case "$VARIANT" in \
      cpu)  pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu; \
            pip install ./tools/fbgemm-gpu-cpu-shim ;; \
      cuda) pip install torch==2.13.0 fbgemm-gpu==1.8.0 --index-url "https://download.pytorch.org/whl/${CUDA_TAG}" ;; \
      *)    echo "VARIANT must be cpu or cuda, got '$VARIANT'" >&2; exit 1 ;; \
    esac

# The package itself (editable, like the README), then a non-root user that owns the checkout (runs/ is written
# there unless output_dir points at a mounted volume).
COPY . .
RUN pip install -e '.[dev]' \
    && useradd --create-home --uid 1000 smes \
    && chown -R smes:smes /workspace/smes-rec
USER smes

CMD ["bash"]
