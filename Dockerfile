# One image for every mono2mesh process (the four workers, the CLI and the API).
#   docker build -t mono2mesh .                      # CPU libtorch (small)
#   docker build --build-arg TORCH_CUDA=1 -t mono2mesh:gpu .   # with the CUDA libraries
# The binaries link libtorch_cpu + libc10 only; on a GPU host they dlopen libtorch_cuda.so
# at start-up, so the same build runs on CPU and GPU machines.

FROM rust:1.95-bookworm AS build
RUN apt-get update -qq && apt-get install -y -qq python3-pip >/dev/null
WORKDIR /src
COPY . .
RUN LIBTORCH_CACHE_DIR=/opt/libtorch bash scripts/install-libtorch.sh \
 && cargo build --release --locked --bins

FROM debian:bookworm-slim
ARG TORCH_CUDA=0
RUN apt-get update -qq && apt-get install -y -qq ca-certificates libgomp1 python3-pip >/dev/null \
 && if [ "$TORCH_CUDA" = 1 ]; then \
      pip install --break-system-packages --no-cache-dir --target /opt/libtorch torch==2.11.0; \
    fi \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /opt/libtorch /opt/libtorch
COPY --from=build /src/target/release/mono2mesh /src/target/release/mono2mesh-gate \
     /src/target/release/mono2mesh-classify /src/target/release/mono2mesh-reconstruct \
     /src/target/release/mono2mesh-refine /usr/local/bin/
COPY --from=build /src/models /opt/mono2mesh/models
ENV LD_LIBRARY_PATH=/opt/libtorch/torch/lib \
    MONO2MESH__MODELS__REGISTRY=/opt/mono2mesh/models
# Not root: deploy/k8s runs the pods as this user (runAsNonRoot). An S3 model registry is
# mirrored under $XDG_CACHE_HOME, which must be writable for it.
RUN useradd --system --uid 10001 --no-create-home mono2mesh
ENV XDG_CACHE_HOME=/tmp/mono2mesh-cache
USER 10001
# 8080 the API, 9464 Prometheus metrics, 8081 the workers' /livez and /readyz.
EXPOSE 8080 9464 8081
CMD ["mono2mesh", "--help"]
