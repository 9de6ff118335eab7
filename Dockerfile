# lwmecps-gym on Ray: the image of every pod of the KubeRay RayService, RayCluster and RayJobs (kuberay/).
# The base must match the Ray pin in pyproject.toml (ray==2.60.0) and its Python (3.11); tests/kuberay checks both.
#   docker build -t <registry>/lwmecps-gym:0.1.0 .
FROM rayproject/ray:2.60.0-py311-cpu

# torch first, from the CPU index: the package pins torch==2.13.0 and would otherwise pull the CUDA build.
RUN pip install --no-cache-dir torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu

WORKDIR /home/ray/lwmecps-gym
COPY --chown=ray:users pyproject.toml README.md ./
COPY --chown=ray:users envs ./envs
COPY --chown=ray:users policies ./policies
COPY --chown=ray:users tune_configs ./tune_configs
COPY --chown=ray:users serve_app ./serve_app
# A regular (non-editable) install: `python -m tune_configs.<preset>`, `serve_app.app:build_app` and `lwmecps`
# work from any directory, which is where Ray starts job drivers and Serve replicas.
RUN pip install --no-cache-dir . && python -c "import envs, policies, tune_configs, serve_app.app"

ENV RAY_USAGE_STATS_ENABLED=0 \
    PYTHONUNBUFFERED=1
WORKDIR /home/ray
