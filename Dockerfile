# syntax=docker/dockerfile:1.7
# The guardrail service image: judge API, management API + dashboard, log subscriber — one image,
# GUARDRAIL_ROLE picks the role (deploy/render.py sets it per Cloud Run service). No model engine
# inside: on Cloud Run the judge model is the vLLM GPU sidecar (inference/Dockerfile), reached at
# GUARDRAIL_INFERENCE_URL=http://localhost:8000. Slim base, pinned versions, non-root.
#
#   docker build -t guardrail-service .
#   docker run -p 8080:8080 -e GUARDRAIL_INFERENCE_URL=http://host:8000 -e GUARDRAIL_MODEL_NAME=… guardrail-service
#
# Pinned base: a full version tag. For byte-for-byte reproducible builds pass the digest too:
#   --build-arg PYTHON_IMAGE=python:3.11.13-slim-bookworm@sha256:<digest from `docker buildx imagetools inspect`>
ARG PYTHON_IMAGE=python:3.11.13-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
RUN python -m venv /opt/venv
# Exact versions the test suite ran with: `python -m deploy.image.lock gcp`, the closure of
# guardrail[gcp] (tests/deploy checks that it was generated for the EXTRAS below).
COPY deploy/image/constraints.txt ./constraints.txt
COPY pyproject.toml README.md ./
COPY guardrail ./guardrail
COPY inference ./inference
# Google Cloud adapters (the Cloud SQL Python Connector; Pub/Sub is plain REST + google-auth);
# never the `engine` extra. Changing EXTRAS means regenerating the constraints for it.
ARG EXTRAS=gcp
RUN /opt/venv/bin/pip install --constraint constraints.txt ".[${EXTRAS}]" \
 && /opt/venv/bin/python -c "import guardrail.app, guardrail.subscriber.app, inference.engine_config, google.cloud.sql.connector"

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="guardrail-service" \
      org.opencontainers.image.description="Japanese LLM guardrail: judge, management API, dashboard, log subscriber"
RUN groupadd --system --gid 10001 guardrail \
 && useradd --system --uid 10001 --gid guardrail --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin guardrail
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    GUARDRAIL_DATA_DIR=/tmp/guardrail \
    PORT=8080
WORKDIR /tmp
USER 10001:10001
EXPOSE 8080
# Docker / Compose use this; Cloud Run ignores HEALTHCHECK and uses the manifests' probes instead.
HEALTHCHECK --interval=30s --timeout=3s --start-period=60s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(f\"http://127.0.0.1:{os.environ.get('PORT', '8080')}/healthz\", timeout=2)"]
ENTRYPOINT ["guardrail"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8080"]
