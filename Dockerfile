# syntax=docker/dockerfile:1
# Switchyard: multi-stage build. Final image = debian:bookworm-slim + one binary.
#
#   docker build -t switchyard .
#   docker run --rm -p 4000:4000 -v switchyard-data:/app/data switchyard
#   # own config:  -v $PWD/my.yaml:/app/config/my.yaml switchyard \
#   #   --config /app/config/my.yaml --host 0.0.0.0 --port 4000 --data-dir /app/data

############################ builder ############################
FROM rust:1-bookworm AS builder
WORKDIR /build

# 1) Dependencies only: manifest + lockfile with dummy sources, so this layer
#    stays cached until Cargo.toml / Cargo.lock change.
COPY Cargo.toml Cargo.lock ./
RUN mkdir -p src \
 && echo 'fn main() {}' > src/main.rs \
 && echo '' > src/lib.rs \
 && cargo build --release --locked \
 && rm -rf src

# 2) Real sources: src/, config/ (prices.yaml is compiled in), templates/ and
#    static/ when present. .dockerignore keeps target/, data/, bench/, .git out.
COPY . .
# Make sure cargo rebuilds our crate rather than reusing the dummy artefacts.
RUN touch src/main.rs src/lib.rs \
 && cargo build --release --locked \
 && cp target/release/switchyard /usr/local/bin/switchyard \
 && (strip /usr/local/bin/switchyard || true)

############################ runtime ############################
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 switchyard \
 && useradd --system --uid 10001 --gid switchyard --home-dir /app --shell /usr/sbin/nologin switchyard \
 && mkdir -p /app/data \
 && chown -R switchyard:switchyard /app

COPY --from=builder /usr/local/bin/switchyard /usr/local/bin/switchyard
COPY config/ /app/config/

WORKDIR /app
USER switchyard
VOLUME /app/data
EXPOSE 4000

ENTRYPOINT ["switchyard"]
CMD ["--config", "/app/config/example.yaml", "--host", "0.0.0.0", "--port", "4000", "--data-dir", "/app/data"]
