# syntax=docker/dockerfile:1
#
# virt-sizer: a static binary on an empty image.
#
#   docker build -t ghcr.io/virt-sizer/virt-sizer:0.1.0 .
#
# The builder links glibc statically (crt-static), so the runtime image holds
# nothing but the binary (and an empty /tmp for the embedded default
# certificate when run without --cert). TLS is rustls with ring: no OpenSSL,
# no system CA store needed (the in-cluster client trusts the ServiceAccount's
# ca.crt).

FROM rust:1.95-bookworm AS builder
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
# Cargo.toml declares the bench target; cargo checks that its file exists.
COPY benches ./benches
ENV RUSTFLAGS="-C target-feature=+crt-static"
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --locked --release --target x86_64-unknown-linux-gnu \
 && cp target/x86_64-unknown-linux-gnu/release/virt-sizer /virt-sizer \
 && mkdir -m 1777 /rootfs-tmp

FROM scratch
LABEL org.opencontainers.image.title="virt-sizer" \
      org.opencontainers.image.description="Kubernetes mutating admission webhook that sizes KubeVirt virt-launcher Pods and Kata Containers sandboxes" \
      org.opencontainers.image.source="https://github.com/virt-sizer/virt-sizer" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="0.1.0"
COPY --from=builder /rootfs-tmp /tmp
COPY --from=builder /virt-sizer /virt-sizer
USER 65532:65532
EXPOSE 8443
ENTRYPOINT ["/virt-sizer"]
CMD ["serve"]
