# The `targeting` image: the binary, with the settings (`config/`) and the extraction queries
# (`sql/`) it ships with, running as a non-root user. Build it from the repository's root:
#
#   docker build -t campaign-targeting:$(git rev-parse --short HEAD) .
#
# and deploy it by digest (`deploy/cronjob.yaml`, `deploy/daemon.yaml`), never by a moving tag.

# --- build: the release binary. LightGBM's C++ build (lightgbm3-sys) needs clang, libclang
# and CMake >= 3.28, newer than Debian's, so CMake comes from PyPI as in scripts/setup.sh.
FROM rust:1.95-bookworm AS build
RUN apt-get update \
    && apt-get install -y --no-install-recommends clang libclang-dev python3-venv \
    && rm -rf /var/lib/apt/lists/* \
    && python3 -m venv /opt/cmake \
    && /opt/cmake/bin/pip install --no-cache-dir 'cmake>=3.28,<4'
ENV CMAKE=/opt/cmake/bin/cmake
WORKDIR /src
COPY . .
# The registry and the target folder are cache mounts: a rebuild after a code change compiles
# the project's crates, not the dependency stack again.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin targeting \
    && install -D target/release/targeting /out/targeting

# --- run: Debian slim with what the binary links at run time (OpenMP for LightGBM, the CA
# roots for S3 over TLS), as user 10001 with no home and no shell login.
FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates libgomp1 libstdc++6 \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin targeting
COPY --from=build /out/targeting /usr/local/bin/targeting
WORKDIR /app
COPY config/ /app/config/
COPY sql/ /app/sql/
USER 10001:10001
# Spill files of a run in shards go to TMPDIR; mount a writable volume there when the root
# filesystem is read-only.
ENV TMPDIR=/tmp
ENTRYPOINT ["targeting"]
CMD ["--help"]
