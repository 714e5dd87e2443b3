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
