# dwell's image for those who build with Docker: the same as make image (deploy/image), which
# needs no Docker daemon. docker build --build-arg VERSION=$(git describe --tags --always) \
#   --build-arg COMMIT=$(git rev-parse HEAD) -t dwell .
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
ARG COMMIT=unknown
ARG TARGETARCH
RUN CGO_ENABLED=0 GOOS=linux GOARCH=${TARGETARCH:-amd64} go build -trimpath \
      -ldflags "-s -w -X main.buildVersion=${VERSION} -X main.buildCommit=${COMMIT}" \
      -o /out/usr/local/bin/dwell ./cmd/dwell \
 && mkdir -p /out/etc/ssl/certs /out/tmp /out/var/lib/dwell \
 && cp /etc/ssl/certs/ca-certificates.crt /out/etc/ssl/certs/ \
 && printf 'root:x:0:0:root:/root:/sbin/nologin\ndwell:x:65532:65532:dwell:/var/lib/dwell:/sbin/nologin\n' > /out/etc/passwd \
 && printf 'root:x:0:\ndwell:x:65532:\n' > /out/etc/group \
 && chmod 1777 /out/tmp && chown 65532:65532 /out/var/lib/dwell && chmod 750 /out/var/lib/dwell

# No base: no shell, no package manager.
FROM scratch
ARG VERSION=dev
ARG COMMIT=unknown
COPY --from=build /out/ /
ENV PATH=/usr/local/bin SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
USER 65532:65532
WORKDIR /var/lib/dwell
EXPOSE 9090 8787
LABEL org.opencontainers.image.title="dwell" \
      org.opencontainers.image.description="dwell: sessions and visits from tracking events on Kafka, exactly once" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${COMMIT}" \
      org.opencontainers.image.source="https://github.com/dwellhq/dwell"
ENTRYPOINT ["/usr/local/bin/dwell"]
CMD ["run"]
