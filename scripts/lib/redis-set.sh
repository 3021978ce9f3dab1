# Shared helpers for scripts that run Redis replication sets with Sentinels on loopback
# (sourced after scripts/lib/procs.sh, not run): background processes remembered for cleanup,
# redis-server nodes and Sentinels on free ports under "$RUN_DIR", and small queries.
#
# The caller sets RUN_DIR (a folder under WORK_DIR), and may change master_name and
# down_after_ms (Sentinel's down-after-milliseconds) from their defaults below.
# shellcheck shell=bash

master_name="mymaster"
# Below 2 s, a Sentinel that has just learnt of the new master on a busy two-core machine can
# find it unresponsive and fail over a second time.
down_after_ms=2000

# Starts a process in the background, remembered for cleanup; sets LAST_PID.
#   spawn <log> <command...>
spawn() {
  local log="$1"
  shift
  "$@" >/dev/null 2>"$log" &
  LAST_PID=$!
  STARTED_PIDS+=("$LAST_PID")
}

# Stops every process started since STARTED_PIDS had $1 entries (newest first).
stop_since() {
  local from="$1" i
  for ((i = ${#STARTED_PIDS[@]} - 1; i >= from; i--)); do
    stop_pid "${STARTED_PIDS[$i]}"
  done
  STARTED_PIDS=("${STARTED_PIDS[@]:0:$from}")
}

# Waits until `redis-cli -p $1 $2...` prints what $expect holds (up to 20 s).
wait_reply() {
  local port="$1" expect="$2" i
  shift 2
  for i in $(seq 200); do
    if [ "$(redis-cli -h 127.0.0.1 -p "$port" "$@" 2>/dev/null)" = "$expect" ]; then
      return 0
    fi
    sleep 0.1
  done
  say "127.0.0.1:$port never answered '$*' with '$expect'"
  return 1
}

# Starts a redis-server on a free port, extra arguments appended; sets LAST_PORT, LAST_PID.
start_node() {
  start_node_at "$(free_port)" "$@"
}

# The same on port $1 (a node coming back where it was).
start_node_at() {
  local dir
  LAST_PORT="$1"
  shift
  dir="$RUN_DIR/redis-$LAST_PORT"
  mkdir -p "$dir"
  spawn "$dir/stderr" redis-server --port "$LAST_PORT" --bind 127.0.0.1 --save "" \
    --appendonly no --repl-diskless-sync-delay 0 --dir "$dir" --logfile "$dir/redis.log" "$@"
  wait_reply "$LAST_PORT" PONG PING
}

# Starts a Sentinel watching 127.0.0.1:$1; sets LAST_PORT.
start_sentinel() {
  local master_port="$1" dir
  LAST_PORT="$(free_port)"
  dir="$RUN_DIR/sentinel-$LAST_PORT"
  mkdir -p "$dir"
  cat >"$dir/sentinel.conf" <<EOF
port $LAST_PORT
bind 127.0.0.1
daemonize no
dir "$dir"
logfile "$dir/sentinel.log"
sentinel monitor $master_name 127.0.0.1 $master_port 2
sentinel down-after-milliseconds $master_name $down_after_ms
sentinel failover-timeout $master_name 5000
sentinel parallel-syncs $master_name 1
EOF
  spawn "$dir/stderr" redis-sentinel "$dir/sentinel.conf"
  wait_reply "$LAST_PORT" PONG PING
}

# Starts the Sentinel that ran on port $1 again, from the configuration it rewrote while it
# ran (what it learnt of the master, the replicas and the other Sentinels); sets LAST_PID.
restart_sentinel() {
  local dir="$RUN_DIR/sentinel-$1"
  LAST_PORT="$1"
  spawn "$dir/stderr" redis-sentinel "$dir/sentinel.conf"
  wait_reply "$LAST_PORT" PONG PING
}

# Waits until the replica on port $1 has its link to the master up (up to 20 s).
wait_link_up() {
  local i
  for i in $(seq 200); do
    redis-cli -h 127.0.0.1 -p "$1" INFO replication 2>/dev/null |
      grep -q 'master_link_status:up' && return 0
    sleep 0.1
  done
  say "replica 127.0.0.1:$1 never linked up"
  return 1
}

# A field of `SENTINEL MASTER mymaster` on Sentinel port $1.
sentinel_field() {
  redis-cli -h 127.0.0.1 -p "$1" SENTINEL MASTER "$master_name" 2>/dev/null |
    awk -v f="$2" 'prev == f { print; exit } { prev = $0 }'
}

# Comma-separated 127.0.0.1:port list of the ports given.
addr_list() {
  local p out=""
  for p in "$@"; do out="$out${out:+,}127.0.0.1:$p"; done
  echo "$out"
}

# Milliseconds since the epoch.
now_ms() {
  date +%s%3N
}
