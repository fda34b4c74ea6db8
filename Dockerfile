# One image, both binaries: the operator (entrypoint) and the auth server it deploys
# (/usr/local/bin/portcullis-authserver, which the realm pods run as their command).
# Base images are pinned by version; CI pins digests when it builds the release image.

FROM rust:1.95.0-slim-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p portcullis-operator -p portcullis-authserver \
 && install -D -m 0755 target/release/portcullis-operator /out/portcullis-operator \
 && install -D -m 0755 target/release/portcullis-authserver /out/portcullis-authserver

# distroless/cc: glibc and CA certificates only; no shell, no package manager.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/ /usr/local/bin/
# Numeric non-root user (distroless "nonroot"); nothing is written to the root filesystem,
# so it runs with readOnlyRootFilesystem.
USER 65532:65532
EXPOSE 8080 9090
ENTRYPOINT ["/usr/local/bin/portcullis-operator"]
CMD ["run"]
