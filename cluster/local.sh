#!/usr/bin/env bash
# A two-node Ray cluster and an MLflow tracking server on this machine.
#
#   cluster/local.sh up        # head (1 CPU) + a second raylet (1 CPU) + mlflow server; prints addresses
#   cluster/local.sh status    # the Ray nodes and the MLflow health check (exit 3 when down)
#   cluster/local.sh exec -- CMD ...   # run CMD inside the cluster's namespace, with its env set
#   cluster/local.sh env       # the environment (RAY_ADDRESS, token path, MLflow URI) as `export` lines
#   cluster/local.sh down      # stops exactly what `up` started (kills its namespace's pid 1)
#   cluster/local.sh info | overrides   # addresses + submit line | config overrides for the shared folder
#
# Everything runs inside a loopback-only network + pid namespace made without root
# (`unshare -rn -p`): Ray binds its node address on every interface, so a namespace is what keeps
# this cluster invisible to (and safe from) other Ray instances on the machine, and `down` tears the
# namespace down instead of `ray stop` (which kills every Ray process on the machine). Commands that
# talk to the cluster then run through `local.sh exec -- ...`. Needs util-linux's unshare/nsenter
# and unprivileged user namespaces (or root).
#
# Ray token authentication is on: `up` generates a token with `ray get-auth-token --generate` into
# the state folder (not ~/.ray, so other clusters' tokens are untouched) and every process gets
# RAY_AUTH_MODE=token and RAY_AUTH_TOKEN_PATH.
#
# Settings (environment): OMNI_CLUSTER_DIR (state, logs, MLflow store, shared storage; default
# outputs/cluster), OMNI_RAY_PORT (GCS, 6390), OMNI_DASHBOARD_PORT (dashboard + job server, 8275),
# OMNI_CLIENT_PORT (Ray client, 10011), OMNI_MLFLOW_PORT (5055), OMNI_HEAD_CPUS / OMNI_WORKER_CPUS (1 / 1),
# OMNI_OBJECT_STORE_BYTES (per node, 300000000), OMNI_UP_ATTEMPTS (3), OMNI_PYTHON_BIN (the venv's bin/).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN="${OMNI_PYTHON_BIN:-$REPO/.venv/bin}"
STATE="$(mkdir -p "${OMNI_CLUSTER_DIR:-$REPO/outputs/cluster}" && cd "${OMNI_CLUSTER_DIR:-$REPO/outputs/cluster}" && pwd)"
GCS_PORT="${OMNI_RAY_PORT:-6390}"
DASH_PORT="${OMNI_DASHBOARD_PORT:-8275}"
CLIENT_PORT="${OMNI_CLIENT_PORT:-10011}"
MLFLOW_PORT="${OMNI_MLFLOW_PORT:-5055}"
HEAD_CPUS="${OMNI_HEAD_CPUS:-1}"
WORKER_CPUS="${OMNI_WORKER_CPUS:-1}"
OBJ_BYTES="${OMNI_OBJECT_STORE_BYTES:-300000000}"
# Ray's unix sockets live under its temp dirs and must stay < 108 bytes: keep that path short.
# Each node gets its own (h/, w/): with one shared temp dir both raylets unpack a job's
# working_dir into the same folder and race (files vanish under the running job).
RAY_TMP="${OMNI_RAY_TEMP_DIR:-/tmp/omni-ray-$(printf %s "$STATE" | cksum | cut -d' ' -f1)}"
TOKEN="$STATE/home/.ray/auth_token"
SHARED="$STATE/shared"
NS_PID_FILE="$STATE/ns.pid"

die() { echo "local.sh: error: $*" >&2; exit 2; }

cluster_env() {  # the environment every process of (and every client of) this cluster needs
  cat <<EOF
export RAY_ADDRESS=http://127.0.0.1:$DASH_PORT
export RAY_AUTH_MODE=token
export RAY_AUTH_TOKEN_PATH=$TOKEN
export MLFLOW_TRACKING_URI=http://127.0.0.1:$MLFLOW_PORT
export OMNI_SHARED_DIR=$SHARED
export RAY_TRAIN_HEALTH_CHECK_INTERVAL_S=0.2
export RAY_USAGE_STATS_ENABLED=0
export RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH=serve_app.proxy_hooks:middlewares
export PATH=$BIN:\$PATH
EOF
}

ns_pid() { [[ -f "$NS_PID_FILE" ]] && kill -0 "$(cat "$NS_PID_FILE")" 2>/dev/null && cat "$NS_PID_FILE"; }

# Run a shell snippet inside the cluster's namespace, with its env.
in_cluster() {
  local pid; pid="$(ns_pid)" || die "cluster is not up (no namespace; run: cluster/local.sh up)"
  nsenter -U -n -p -m --preserve-credentials -t "$pid" -- bash -c "$(cluster_env); cd '$REPO'; $1"
}

wait_for() {  # wait_for SECONDS DESCRIPTION SNIPPET -> 0 when SNIPPET succeeded in time
  local deadline=$((SECONDS + $1))
  until in_cluster "$3" >/dev/null 2>&1; do
    (( SECONDS < deadline )) || { echo "local.sh: $2 not ready after $1 s" >&2; return 1; }
    sleep 1
  done
}

ray_start_head() {
  echo "ray start --head --node-ip-address=127.0.0.1 --port=$GCS_PORT --dashboard-host=127.0.0.1 \
--dashboard-port=$DASH_PORT --ray-client-server-port=$CLIENT_PORT --num-cpus=$HEAD_CPUS --num-gpus=0 \
--object-store-memory=$OBJ_BYTES --temp-dir=$RAY_TMP/h --node-manager-port=$((GCS_PORT + 1)) \
--object-manager-port=$((GCS_PORT + 2)) --min-worker-port=$((GCS_PORT + 100)) --max-worker-port=$((GCS_PORT + 299)) \
--dashboard-agent-listen-port=$((GCS_PORT + 10)) --dashboard-agent-grpc-port=$((GCS_PORT + 11)) \
--runtime-env-agent-port=$((GCS_PORT + 12)) --metrics-export-port=$((GCS_PORT + 13)) \
--resources='{\"omni_head\": 1}' --disable-usage-stats"
}

ray_start_worker() {
  echo "ray start --address=127.0.0.1:$GCS_PORT --node-ip-address=127.0.0.1 --num-cpus=$WORKER_CPUS --num-gpus=0 \
--object-store-memory=$OBJ_BYTES --temp-dir=$RAY_TMP/w --node-manager-port=$((GCS_PORT + 3)) --object-manager-port=$((GCS_PORT + 4)) \
--min-worker-port=$((GCS_PORT + 300)) --max-worker-port=$((GCS_PORT + 499)) \
--dashboard-agent-listen-port=$((GCS_PORT + 20)) --dashboard-agent-grpc-port=$((GCS_PORT + 21)) \
--runtime-env-agent-port=$((GCS_PORT + 22)) --metrics-export-port=$((GCS_PORT + 23)) \
--resources='{\"omni_worker\": 1}' --disable-usage-stats"
}

write_runtime_env() {  # what `ray job submit --runtime-env` gets: the repo travels, the env is passed in
  cat > "$STATE/runtime_env.yaml" <<EOF
# Written by cluster/local.sh up. The repo travels as working_dir; outputs go to $SHARED.
working_dir: $REPO
excludes: [".venv", ".tools", "outputs", ".git", "*.tar", "__pycache__", ".pytest_cache", ".hypothesis", ".ruff_cache", ".nltk_data", "*.egg-info"]
env_vars:
  MLFLOW_TRACKING_URI: "http://127.0.0.1:$MLFLOW_PORT"
  OMNI_SHARED_DIR: "$SHARED"
  RAY_TRAIN_HEALTH_CHECK_INTERVAL_S: "0.2"
  OMP_NUM_THREADS: "1"
EOF
}

shared_overrides() {  # config overrides that put every output on the storage both nodes see
  echo "data.output_dir=$SHARED/data train.output_dir=$SHARED/checkpoints train.storage_path=$SHARED/ray_results \
eval.output_dir=$SHARED/eval mlflow.artifact_dir=$SHARED/mlruns"
}

submit_line() {
  echo "cluster/local.sh exec -- ray job submit --address http://127.0.0.1:$DASH_PORT --runtime-env $STATE/runtime_env.yaml \
-- python -m jobs.prepare_data --config configs/tiny.yaml $(shared_overrides)"
}

make_namespace() {  # pid 1 of the namespace is a reaper; killing it ends every process of the cluster
  setsid unshare -rn -p -f --mount-proc --kill-child "$BIN/python" -c 'import os,subprocess,time
subprocess.run(["ip","link","set","lo","up"],check=True)
while True:
    try: os.wait()
    except ChildProcessError: time.sleep(0.5)' >"$STATE/logs/namespace.log" 2>&1 < /dev/null &
  local upid=$! child=""
  for _ in $(seq 50); do
    child="$(cat /proc/$upid/task/$upid/children 2>/dev/null | awk '{print $1}')"
    [[ -n "$child" ]] && break; sleep 0.1
  done
  [[ -n "$child" ]] || { echo "local.sh: could not create the namespace (see $STATE/logs/namespace.log)" >&2; return 1; }
  echo "$child" > "$NS_PID_FILE"
  wait_for 10 "loopback in the namespace" "ip -o link show lo | grep -q UP"
}

start_all() {  # one attempt: namespace, head, second raylet, MLflow; nonzero on any failure
  rm -rf "$RAY_TMP"; mkdir -p "$RAY_TMP"
  make_namespace || return 1
  echo "starting the Ray head (GCS 127.0.0.1:$GCS_PORT) ..."
  in_cluster "$(ray_start_head) > '$STATE/logs/head.log' 2>&1" || { tail -5 "$STATE/logs/head.log" >&2; return 1; }
  touch "$STATE/head.up"
  echo "starting a second raylet ..."
  in_cluster "$(ray_start_worker) > '$STATE/logs/worker.log' 2>&1" || { tail -5 "$STATE/logs/worker.log" >&2; return 1; }
  echo "starting the MLflow tracking server (127.0.0.1:$MLFLOW_PORT) ..."
  in_cluster "nohup mlflow server --backend-store-uri sqlite:///$STATE/mlflow/mlflow.db \
--default-artifact-root $STATE/mlflow/artifacts --host 127.0.0.1 --port $MLFLOW_PORT --workers 1 \
> '$STATE/logs/mlflow.log' 2>&1 < /dev/null & echo \$! > '$STATE/mlflow.pid'"
  wait_for 180 "MLflow server" "python '$REPO/cluster/probe.py' mlflow" || return 1
  wait_for 120 "two Ray nodes" "python '$REPO/cluster/probe.py' wait-nodes 2 5" || return 1
}

cmd_up() {
  [[ -x "$BIN/ray" && -x "$BIN/mlflow" ]] || die "no ray/mlflow in $BIN: run \`make install\` or set OMNI_PYTHON_BIN"
  ns_pid >/dev/null && die "already up (state in $STATE): run \`cluster/local.sh down\` first"
  command -v unshare >/dev/null && command -v nsenter >/dev/null || die "needs unshare and nsenter (util-linux)"
  mkdir -p "$STATE/logs" "$STATE/home" "$SHARED" "$STATE/mlflow"
  # Ray's own generator; HOME points into the state folder so ~/.ray stays untouched.
  [[ -s "$TOKEN" ]] || HOME="$STATE/home" env -u RAY_AUTH_TOKEN -u RAY_AUTH_TOKEN_PATH "$BIN/ray" get-auth-token --generate >/dev/null 2>&1 \
    || die "ray get-auth-token --generate failed"
  chmod 600 "$TOKEN"
  write_runtime_env
  local t0=$SECONDS attempt
  # On a loaded machine a raylet can miss Ray's fixed 15 s wait for its dashboard agent: start over.
  for attempt in $(seq "${OMNI_UP_ATTEMPTS:-3}"); do
    if start_all; then
      echo "up in $((SECONDS - t0)) s"
      cmd_info
      return 0
    fi
    echo "local.sh: attempt $attempt failed (logs: $STATE/logs, $RAY_TMP/*/session_latest/logs); cleaning up" >&2
    cmd_down >/dev/null
  done
  die "cluster did not come up after ${OMNI_UP_ATTEMPTS:-3} attempts"
}

cmd_info() {
  cat <<EOF
Ray GCS:          127.0.0.1:$GCS_PORT   (head $HEAD_CPUS CPU, worker $WORKER_CPUS CPU)
Ray dashboard:    http://127.0.0.1:$DASH_PORT   (job server; token auth on)
Ray client:       ray://127.0.0.1:$CLIENT_PORT
MLflow:           http://127.0.0.1:$MLFLOW_PORT   (store $STATE/mlflow)
shared storage:   $SHARED
auth token:       $TOKEN   (RAY_AUTH_MODE=token RAY_AUTH_TOKEN_PATH=...)
network:          loopback-only namespace (pid $(cat "$NS_PID_FILE")): reach it with cluster/local.sh exec -- CMD
submit a job:
  $(submit_line)
EOF
}

cmd_status() {
  ns_pid >/dev/null || { echo "down"; return 3; }
  in_cluster "python cluster/probe.py nodes && python cluster/probe.py mlflow"
}

cmd_down() {
  local pid; pid="$(ns_pid)" || { echo "already down"; rm -f "$NS_PID_FILE" "$STATE/head.up" "$STATE/mlflow.pid"; return 0; }
  kill -KILL "$pid"   # pid 1 of the namespace: the kernel then kills every process in it
  for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  rm -f "$NS_PID_FILE" "$STATE/head.up" "$STATE/mlflow.pid"
  rm -rf "$RAY_TMP"
  echo "down (state kept in $STATE)"
}

case "${1:-}" in
  up) cmd_up ;;
  down) cmd_down ;;
  status) cmd_status ;;
  info) cmd_info ;;
  env) cluster_env ;;
  overrides) shared_overrides ;;
  exec)
    shift; [[ "${1:-}" == "--" ]] && shift
    [[ $# -gt 0 ]] || die "exec needs a command: cluster/local.sh exec -- ray job list"
    in_cluster "$(printf '%q ' "$@")" ;;
  *) echo "usage: cluster/local.sh up|down|status|info|env|overrides|exec -- CMD" >&2; exit 2 ;;
esac
