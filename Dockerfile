# syntax=docker/dockerfile:1
#
# virt-sizer: a static binary on an empty image, for linux/amd64 and
# linux/arm64. One architecture (the build machine's):
#
#   docker build --build-arg VIRT_SIZER_COMMIT=$(git rev-parse --short HEAD) \
#     -t REGISTRY/virt-sizer:0.1.0 .
#
# Both, pushed as one multi-architecture image (needs `docker buildx`):
#
#   docker buildx build --platform linux/amd64,linux/arm64 \
#     --build-arg VIRT_SIZER_COMMIT=$(git rev-parse --short HEAD) \
#     -t REGISTRY/virt-sizer:0.1.0 --push .
#
# The builder runs on the build machine's own architecture and
# cross-compiles for the target one (TARGETARCH, set by BuildKit), so no
# emulation is needed: amd64 -> x86_64-unknown-linux-gnu, arm64 ->
# aarch64-unknown-linux-gnu, with Debian's cross gcc for the C parts (ring,
# mimalloc) and the final link. glibc is linked statically (crt-static), so
# the runtime image holds nothing but the binary (and an empty /tmp for the
# embedded default certificate when run without --cert). TLS is rustls with
# ring: no OpenSSL, no system CA store needed (the in-cluster client trusts
# the ServiceAccount's ca.crt).

FROM --platform=$BUILDPLATFORM rust:1.95-bookworm AS builder
ARG TARGETARCH
ARG BUILDARCH
SHELL ["/bin/bash", "-euo", "pipefail", "-c"]
# TARGETARCH -> the Rust target and the GNU triple of its C toolchain; a
# cross gcc and the target's libc only when the architectures differ.
RUN case "$TARGETARCH" in \
      amd64) target=x86_64-unknown-linux-gnu;  gnu=x86_64-linux-gnu;  cross="gcc-x86-64-linux-gnu libc6-dev-amd64-cross" ;; \
      arm64) target=aarch64-unknown-linux-gnu; gnu=aarch64-linux-gnu; cross="gcc-aarch64-linux-gnu libc6-dev-arm64-cross" ;; \
      *) echo "unsupported TARGETARCH '$TARGETARCH': build linux/amd64 or linux/arm64" >&2; exit 1 ;; \
    esac; \
    if [ "$TARGETARCH" != "$BUILDARCH" ]; then \
      apt-get update; \
      apt-get install -y --no-install-recommends $cross; \
      rm -rf /var/lib/apt/lists/*; \
      printf 'export CARGO_TARGET_%s_LINKER=%s-gcc\nexport CC_%s=%s-gcc\nexport AR_%s=%s-ar\n' \
        "$(tr 'a-z-' 'A-Z_' <<<"$target")" "$gnu" \
        "${target//-/_}" "$gnu" "${target//-/_}" "$gnu" > /cross.env; \
    else \
      : > /cross.env; \
    fi; \
    rustup target add "$target"; \
    echo "$target" > /rust-target
WORKDIR /src
COPY Cargo.toml Cargo.lock build.rs ./
COPY src ./src
# Cargo.toml declares the bench targets; cargo checks that their files exist.
COPY benches ./benches
# With --target, RUSTFLAGS reach only the target's artefacts, not build
# scripts or proc macros (which run on the build machine).
ENV RUSTFLAGS="-C target-feature=+crt-static"
# The commit `virt-sizer --version` names (build.rs): the context has no
# .git, so pass it, e.g. --build-arg VIRT_SIZER_COMMIT=$(git rev-parse --short HEAD).
# Without it the version says "unknown".
ARG VIRT_SIZER_COMMIT
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target,sharing=locked \
    source /cross.env; \
    target=$(cat /rust-target); \
    cargo build --locked --release --target "$target"; \
    cp "target/$target/release/virt-sizer" /virt-sizer; \
    mkdir -m 1777 /rootfs-tmp

FROM scratch
LABEL org.opencontainers.image.title="virt-sizer" \
      org.opencontainers.image.description="Kubernetes mutating admission webhook that sizes KubeVirt virt-launcher Pods and Kata Containers sandboxes" \
      org.opencontainers.image.source="https://github.com/virt-sizer/virt-sizer" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="0.1.0"
COPY --from=builder /rootfs-tmp /tmp
COPY --from=builder /virt-sizer /virt-sizer
# The allocator's settings (virt_sizer::ALLOCATOR_ENV): freed memory goes
# back to the system at once (docs/performance.md).
ENV MIMALLOC_PURGE_DELAY=0
USER 65532:65532
EXPOSE 8443 8081
ENTRYPOINT ["/virt-sizer"]
CMD ["serve"]
