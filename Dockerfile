# The InstructFlow binary (CLI and worker) with OpenBLAS.
FROM golang:1.26-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends libopenblas-dev && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN go build -trimpath -o /out/instructflow ./cmd/instructflow

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends libopenblas0 ca-certificates && rm -rf /var/lib/apt/lists/* \
    && useradd --system --home /var/lib/instructflow --create-home instructflow
COPY --from=build /out/instructflow /usr/local/bin/instructflow
USER instructflow
WORKDIR /var/lib/instructflow
ENTRYPOINT ["instructflow"]
CMD ["worker"]

# The GPU worker pool's image (docker compose --profile gpu): a worker whose
# stages set to `trainer: exec` run the reference PyTorch trainer, CUDA when
# the container has GPUs. PyTorch's CUDA image is Ubuntu, so the binary is
# built without cgo (the pure-Go engine kernels; this pool trains on GPUs).
FROM golang:1.26-bookworm AS build-static
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -o /out/instructflow ./cmd/instructflow

FROM pytorch/pytorch:2.4.1-cuda12.1-cudnn9-runtime AS torch-worker
RUN useradd --system --home /var/lib/instructflow --create-home instructflow
COPY --from=build-static /out/instructflow /usr/local/bin/instructflow
COPY trainers/torch /opt/instructflow/trainers/torch
USER instructflow
WORKDIR /opt/instructflow
ENTRYPOINT ["instructflow"]
CMD ["worker"]
