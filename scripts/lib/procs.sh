# Shared helpers for scripts/demo, scripts/bench and scripts/bench-failover (sourced, not
# run): free loopback ports, the release builds, a redis-server and the proxy started in a
# temporary folder, and a cleanup that stops every process started here, on any exit (normal
# end, error, Ctrl-C, TERM).
#
# After sourcing: call `procs_init` once; then `start_redis` and `start_proxy` set
# REDIS_PORT/REDIS_PID and PROXY_PORT/PROXY_PID. Logs are in "$WORK_DIR".
# shellcheck shell=bash

ROOT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
# Where cargo builds (CARGO_TARGET_DIR when set, as cargo itself does).
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT_DIR/target}"
PROXY_BIN="$TARGET_DIR/release/redis-failover-proxy"
LOAD_BIN="$TARGET_DIR/release/redis-failover-load"
WORK_DIR=""
STARTED_PIDS=()

# Prints a line to stderr, prefixed with the script's name.
say() {
  echo "[$(basename "$0")] $*" >&2
}

# Stops one process: TERM, up to 5 s to exit, then KILL.
stop_pid() {
  local pid="$1" i
  kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for i in $(seq 50); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    kill -KILL "$pid" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || true
}

# Stops every process started through these helpers (newest first) and removes the work dir.
procs_cleanup() {
  local i
  for ((i = ${#STARTED_PIDS[@]} - 1; i >= 0; i--)); do
    stop_pid "${STARTED_PIDS[$i]}"
  done
  STARTED_PIDS=()
  if [ -n "$WORK_DIR" ] && [ -d "$WORK_DIR" ]; then
    rm -rf "$WORK_DIR"
  fi
}

# Creates the work dir and installs the traps. Ctrl-C and TERM exit through the EXIT trap.
procs_init() {
  WORK_DIR="$(mktemp -d "${TMPDIR:-/tmp}/rfp-$(basename "$0").XXXXXX")"
  trap procs_cleanup EXIT
  trap 'say "interrupted"; exit 130' INT
  trap 'exit 143' TERM
}

# Whether something accepts connections on 127.0.0.1:$1.
port_open() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# Prints a port on 127.0.0.1 that nothing listens on. Chosen below Linux's ephemeral range
# (32768+) so that outgoing connections do not take it meanwhile; the caller retries if the
# server it starts finds it taken anyway.
free_port() {
  local p i
  for i in $(seq 200); do
    p=$((20000 + RANDOM % 12000))
    if ! port_open "$p"; then
      echo "$p"
      return 0
    fi
  done
  say "no free port found"
  return 1
}

# Builds the proxy in release mode (quiet unless it fails).
build_proxy() {
  say "building the proxy (cargo build --release)"
  (cd "$ROOT_DIR" && cargo build --release --quiet --bin redis-failover-proxy)
}

# Builds the proxy and the load harness (LOAD_BIN) in release mode.
build_proxy_and_load() {
  say "building the proxy and the load harness (cargo build --release)"
  (cd "$ROOT_DIR" &&
    cargo build --release --quiet --bin redis-failover-proxy --bin redis-failover-load)
}

# Starts a redis-server on a free port; sets REDIS_PORT and REDIS_PID.
start_redis() {
  local attempt i
  for attempt in 1 2 3 4 5; do
    REDIS_PORT="$(free_port)"
    mkdir -p "$WORK_DIR/redis-$REDIS_PORT"
    redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no \
      --dir "$WORK_DIR/redis-$REDIS_PORT" --logfile "$WORK_DIR/redis-$REDIS_PORT/redis.log" \
      --daemonize no >/dev/null 2>&1 &
    REDIS_PID=$!
    STARTED_PIDS+=("$REDIS_PID")
    for i in $(seq 100); do
      if [ "$(redis-cli -h 127.0.0.1 -p "$REDIS_PORT" PING 2>/dev/null)" = "PONG" ]; then
        return 0
      fi
      kill -0 "$REDIS_PID" 2>/dev/null || break
      sleep 0.05
    done
    stop_pid "$REDIS_PID"
    say "redis-server did not start on port $REDIS_PORT (attempt $attempt)"
  done
  return 1
}

# Waits until a SET through 127.0.0.1:$1 succeeds while process $2 runs (up to 10 s).
wait_ready() {
  local port="$1" pid="$2" i
  for i in $(seq 200); do
    if [ "$(redis-cli -h 127.0.0.1 -p "$port" SET __ready__ 1 2>/dev/null)" = "OK" ]; then
      redis-cli -h 127.0.0.1 -p "$port" DEL __ready__ >/dev/null
      return 0
    fi
    kill -0 "$pid" 2>/dev/null || return 1
    sleep 0.05
  done
  return 1
}

# Starts the proxy in front of 127.0.0.1:$REDIS_PORT and waits until a write through it
# succeeds (a master is verified); sets PROXY_PORT, PROXY_PID and PROXY_LOG. Extra arguments
# go to the proxy.
start_proxy() {
  local attempt
  for attempt in 1 2 3 4 5; do
    PROXY_PORT="$(free_port)"
    PROXY_LOG="$WORK_DIR/proxy-$PROXY_PORT.log"
    NO_COLOR=1 RUST_LOG="${RUST_LOG:-info}" "$PROXY_BIN" \
      --listen "127.0.0.1:$PROXY_PORT" --nodes "127.0.0.1:$REDIS_PORT" "$@" \
      >/dev/null 2>"$PROXY_LOG" &
    PROXY_PID=$!
    STARTED_PIDS+=("$PROXY_PID")
    wait_ready "$PROXY_PORT" "$PROXY_PID" && return 0
    stop_pid "$PROXY_PID"
    say "the proxy did not become ready on port $PROXY_PORT (attempt $attempt):"
    sed 's/^/    /' "$PROXY_LOG" >&2 || true
  done
  return 1
}

# Total CPU time (user + system) of process $1 so far, in clock ticks.
cpu_ticks() {
  # Fields after the command name, which is in parentheses: utime and stime are the 12th and
  # 13th of them (fields 14 and 15 of /proc/<pid>/stat).
  sed 's/.*) //' "/proc/$1/stat" | awk '{ print $12 + $13 }'
}
