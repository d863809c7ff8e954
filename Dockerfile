# One Switchboard replica (README, "In a container"). It installs and runs what the tested deployment runs
# (tests/test_deploy.py: `python app.py` with the runtime requirements, which .ci/run installs with the dev
# ones); it is not built by the tests. deploy/compose.yaml runs two of them on Redis behind haproxy.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 \
    GRADIO_SERVER_NAME=0.0.0.0 GRADIO_SERVER_PORT=7860

RUN useradd --create-home --uid 10001 switchboard
WORKDIR /app
COPY requirements.txt ./
RUN python -m pip install -q --upgrade pip && python -m pip install -q -r requirements.txt
# Only the app: no .env, data/ or tests in the image (settings come from the environment).
COPY app.py ./
COPY chatbot ./chatbot
RUN mkdir data && chown switchboard:switchboard data

USER switchboard
EXPOSE 7860
# 200 while the conversation store answers (GET /healthz), else the container is unhealthy.
HEALTHCHECK --interval=10s --timeout=5s --start-period=90s --retries=3 CMD ["python", "-c", \
    "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('GRADIO_SERVER_PORT', '7860'), timeout=4)"]
CMD ["python", "app.py"]
