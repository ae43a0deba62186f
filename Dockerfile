# fisproxy as a container: a sidecar next to the application, or a service in docker compose.
#
#   docker build -t fisproxy .
#   docker run --rm -p 127.0.0.1:8080:8080 -p 127.0.0.1:8082:8082 -v fisproxy-certs:/certs \
#     fisproxy --aws-endpoint http://moto:5000        # extra flags go after the image name
#
# /certs holds the CA (share mitmproxy-ca-cert.pem with the application, read-only; the private
# key is mode 0600 and owned by this image's user), /state the SQLite store (templates,
# experiments and logs survive restarts). docs/sidecar.md has the compose and Kubernetes recipes.

# 3.11: the Python and mitmproxy (11.0.x) the test suite runs on. An exact tag (Python release
# and Debian release), so a rebuild does not move to another Python or Debian. For a
# byte-identical base, add the digest that `docker buildx imagetools inspect
# python:3.11.14-slim-bookworm` prints: FROM python:3.11.14-slim-bookworm@sha256:...
FROM python:3.11.14-slim-bookworm

# FISPROXY_CERTS / FISPROXY_STATE: the defaults of `fisproxy env` and `fisproxy ca` when run
# inside the container (docker exec). FISPROXY_RUNTIME_DIR: where the running proxy leaves its
# address for them, on a volume, so the root filesystem can be read-only.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    FISPROXY_CERTS=/certs \
    FISPROXY_STATE=/state/fisproxy.sqlite \
    FISPROXY_RUNTIME_DIR=/state/run

# Only what `pip install .` reads (.dockerignore is an allow-list too); no dev extras, but the
# Redis client (the `redis` extra: `--store redis://...`, a fleet of sidecars on one store).
# Every dependency at the exact version of docker/constraints.txt (regenerate it with
# docker/update-constraints after changing pyproject.toml's dependencies).
COPY pyproject.toml README.md /src/
COPY docker/constraints.txt /src/docker/constraints.txt
COPY fisproxy /src/fisproxy
RUN pip install --no-cache-dir --constraint /src/docker/constraints.txt "/src[redis]" \
    && rm -rf /src \
    && useradd --system --create-home --uid 10001 --user-group fisproxy \
    && mkdir -p /certs /state \
    && chown fisproxy:fisproxy /certs /state

# Numeric, so Kubernetes' runAsNonRoot can check it.
USER 10001
WORKDIR /home/fisproxy
VOLUME ["/certs", "/state"]
# 8080: the proxy (HTTPS_PROXY); 8082: the control API (FIS, Chaos, health).
EXPOSE 8080 8082

# Python, not curl: the slim image has no curl. No proxy for this loopback call.
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request as u; u.build_opener(u.ProxyHandler({})).open('http://127.0.0.1:8082/_fisproxy/health', timeout=4)"]

# 0.0.0.0 so other containers (or the pod's app container) reach it; fisproxy prints a warning
# for this: publish the ports on 127.0.0.1 only, or keep them on a private network.
# Flags given to `docker run IMAGE ...` / compose `command:` are appended (CMD), e.g.
# --aws-endpoint http://moto:5000, --templates /templates/chaos.yaml, --seed 7.
ENTRYPOINT ["fisproxy", "run", "--listen-host", "0.0.0.0", "--port", "8080", "--control-port", "8082", "--certs", "/certs", "--state", "/state/fisproxy.sqlite"]
CMD []
