# rekko: the seed's `docker run -e P1=... rekko` lines, a demo and the HTTP API.
#
#   docker build -t rekko .
#   docker run --rm rekko                                 # demo on the embedded sample
#   docker run --rm --user "$(id -u):$(id -g)" -v "$PWD/data:/app/data" -v "$PWD/matrix:/app/matrix" \
#     -e P1=data/interactions.parquet ... -e P9=matrix/cos_sim_desc.pkl rekko   # pipeline
#   docker compose -f deploy/compose.yaml up -d                # a Dask scheduler and two workers
#
# Two stages: the first installs rekko and its wheels into a virtualenv, the second copies only
# that virtualenv, so no pip cache, build tree or compiler reaches the final image.

FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
WORKDIR /src
# Dependencies first, from the lock alone, so this slow layer stays cached while only the code
# changes: requirements/lock.txt pins (with sha256 hashes) the versions the test suite passed with,
# for rekko with its `serve` extra (the HTTP API) and its `dask` extra (the Dask engine and the
# `dask scheduler` / `dask worker` commands of REKKO_MODE=scheduler|worker). `make lock` writes it.
COPY requirements/lock.txt ./requirements/
RUN /opt/venv/bin/pip install --no-cache-dir --require-hashes -r requirements/lock.txt
COPY pyproject.toml README.md LICENSE ./
COPY rekko/ ./rekko/
# The test suites shipped inside the scientific wheels are dead weight at run time, and pip and
# setuptools are not needed once the venv is built.
RUN /opt/venv/bin/pip install --no-cache-dir --no-deps . \
 && /opt/venv/bin/pip uninstall --yes --quiet pip setuptools \
 && find /opt/venv/lib -depth -type d -name tests -path '*/site-packages/*' -exec rm -rf {} +


FROM python:3.11-slim
# HOME=/tmp keeps `docker run --user <any uid>` working: nothing needs a home directory.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    LANG=C.UTF-8 \
    HOME=/tmp \
    NUMBA_CACHE_DIR=/app/.numba-cache
# uid/gid 1000 is the first user on most Linux hosts, so files written to bind-mounted folders
# belong to the host user even without --user; others pass --user "$(id -u):$(id -g)".
RUN groupadd --gid 1000 rekko \
 && useradd --uid 1000 --gid rekko --home-dir /app --no-create-home --shell /usr/sbin/nologin rekko
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
COPY --chown=rekko:rekko data/ ./data/
COPY entrypoint.sh ./
# data/, matrix/ and pred/ are writable by any uid, so `--user` works without mounts too.
RUN chmod 0755 entrypoint.sh \
 && mkdir -p matrix pred .numba-cache \
 && chown rekko:rekko matrix pred .numba-cache \
 && chmod 0777 data matrix pred .numba-cache
USER 1000:1000
# Build the sample's artifacts now: the demo and the seed's recommend line answer at once,
# and a broken pipeline fails the build instead of the first run. The batch run compiles the
# ranking kernel into NUMBA_CACHE_DIR (writable by any uid), so no container pays for it again
# on a host with the same processor.
RUN rekko pipeline \
 && rekko recommend --all-users --output /tmp/warm.parquet \
 && rm /tmp/warm.parquet
EXPOSE 80
# REKKO_MODE=scheduler: the Dask scheduler and its dashboard (no authentication: private networks only).
EXPOSE 8786 8787
ENTRYPOINT ["/app/entrypoint.sh"]
