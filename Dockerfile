# One image for every mode of the fleet (the command picks it):
#   python process_manager.py            the fleet: one bot.py child per BOT_TOKEN_n (default)
#   python bot.py --bot N                one bot (Kubernetes: BOT_ID_FROM_ORDINAL, see deploy/kubernetes/)
#   python register_commands.py          upload the slash commands, then exit
# Exec form everywhere: the command is PID 1 and gets SIGTERM itself. bot.py and process_manager.py
# handle SIGTERM (final snapshot, leave voice) and the manager waits for (reaps) its bots; the bots start
# no processes of their own, so no init is needed for orphans.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    LOG_DIR=/app/logs \
    STATE_DIR=/app/state \
    METRICS_HOST=0.0.0.0

WORKDIR /app

# Dependencies first, from pyproject.toml alone: this layer is rebuilt only when they change.
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
    && pip install --no-cache-dir -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

# A non-root user owns only what the bots write: logs and snapshots. The code stays root's (read-only to it).
RUN useradd --system --uid 10001 --user-group --home-dir /app --no-create-home --shell /usr/sbin/nologin music \
    && mkdir -p /app/logs /app/state \
    && chown music:music /app/logs /app/state

COPY bot.py process_manager.py register_commands.py ./
COPY commands/ commands/
COPY utils/ utils/

USER 10001:10001
VOLUME ["/app/logs", "/app/state"]
STOPSIGNAL SIGTERM

# With METRICS_PORT set, bot n answers GET /healthz on METRICS_PORT+n; the probe finds the bots of PID 1
# itself and reports healthy when metrics are off (no endpoint to ask).
HEALTHCHECK --interval=30s --timeout=10s --start-period=60s --retries=3 \
    CMD ["python", "-m", "utils.healthcheck"]

CMD ["python", "process_manager.py"]
