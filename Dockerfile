# The `rinha-api` image, used by both API services of docker-compose.yml (built once, by api01).
#
# Four decisions shape it:
# - Dependencies build in their own layer, from the manifests and stub sources only, so a change
#   to src/ rebuilds just this crate (the fat-LTO link stays: it is the release profile). On
#   2 cores, about 3 min 40 s for the dependencies and 1.5 min for the crate.
# - The runtime is distroless (glibc, libgcc, CA certificates, a `nonroot` user; no shell, no
#   package manager): the binary is all that runs, so the image is little more than the binary.
# - It builds with Docker Engine 20.10's own Dockerfile frontend (classic builder or BuildKit):
#   no `# syntax=` line, which would pull a frontend image from a registry at every build, and
#   no feature newer than that. Offline, the build needs only the two base images below (and
#   crates.io, for the dependencies).
# - The base images are build arguments whose defaults are the upstream images. A machine that
#   reaches no registry builds on local stand-ins with other names (scripts/docker-setup makes
#   them and prints the variables; the compose files pass RUST_IMAGE and RUNTIME_IMAGE on), so
#   no upstream name ever points to a stand-in.
#
# The SQLite file lives on a named volume at /shared. A fresh named volume takes the ownership of
# the image directory it is mounted on, so /shared is created here owned by the non-root user.

# The runtime's Debian release must be the build stage's (the glibc the binary is linked against).
ARG RUST_IMAGE=rust:1.95-slim-bookworm
ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:nonroot

# ---- build ---------------------------------------------------------------------------------------
FROM ${RUST_IMAGE} AS build
WORKDIR /src

# 1. Dependencies. The workspace has two members and cargo reads both manifests, so the load
#    tester's manifest and a stub of each target are enough to resolve and build every dependency
#    of rinha-api at the versions of Cargo.lock. Then the stub crate is forgotten: COPY keeps the
#    sources' modification times, which can be older than the stub build, and cargo would take
#    the stub binary for up to date. A `[[bench]]` the manifest declares needs its file for cargo
#    to read the manifest at all; it is never built here, so its stub stays (the benches are not
#    in the build context).
COPY Cargo.toml Cargo.lock ./
# The SQLite compile flags (LIBSQLITE3_FLAGS), before anything builds SQLite.
COPY .cargo/config.toml .cargo/
COPY load-test/Cargo.toml load-test/
RUN mkdir -p src load-test/src benches \
    && echo 'fn main() {}' > src/main.rs \
    && touch src/lib.rs \
    && echo 'fn main() {}' > load-test/src/main.rs \
    && awk -F '"' '/^\[\[bench\]\]/ { b = 1; next } /^\[/ { b = 0 } b && /^name *=/ { print $2 }' Cargo.toml \
       | while read -r name; do echo 'fn main() {}' > "benches/$name.rs"; done \
    && cargo build --release --locked -p rinha-api \
    && rm -rf src target/release/.fingerprint/rinha-api-*

# 2. The service itself. script.sql and script.postgres.sql are compiled into the binary
#    (include_str!).
COPY script.sql script.postgres.sql ./
COPY src src
RUN cargo build --release --locked -p rinha-api \
    && strip target/release/rinha-api \
    && mkdir -p /out/shared /out/sockets \
    && cp target/release/rinha-api /out/

# ---- runtime -------------------------------------------------------------------------------------
# Same Debian release as the build stage, so the glibc the binary was linked against is there.
FROM ${RUNTIME_IMAGE}
COPY --from=build /out/rinha-api /usr/local/bin/rinha-api
# 65532 is distroless's `nonroot` user.
COPY --from=build --chown=65532:65532 /out/shared /shared
# Where each instance puts the Unix socket nginx connects to (a volume shared with nginx, which
# takes this directory's owner when Compose creates it).
COPY --from=build --chown=65532:65532 /out/sockets /run/rinha
USER 65532:65532
ENV API_HOST=0.0.0.0 \
    API_PORT=8080 \
    DATABASE_URL=sqlite:///shared/rinha.db
EXPOSE 8080
# The API stops gracefully on SIGTERM (what `docker compose stop` sends) and, as PID 1, installs
# its own handlers, so no init process is needed.
ENTRYPOINT ["/usr/local/bin/rinha-api"]
