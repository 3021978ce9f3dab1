# The HAProxy the benchmarks compare the proxy with (sourced after scripts/lib/procs.sh, not
# run): scripts/lib/haproxy-redis.cfg, the one configuration of HAProxy in front of Redis that
# scripts/bench, scripts/bench-failover and tests/lab_compare.rs all use, so that every
# comparison is with the same HAProxy and its commonly documented master check.
# shellcheck shell=bash

# Writes the configuration to $1, listening on $2, with one `server` line per further
# argument (host:port), named r0, r1, ... in order.
haproxy_config() {
  local out="$1" bind="$2" node i=0
  shift 2
  sed "s/@BIND@/$bind/" "$ROOT_DIR/scripts/lib/haproxy-redis.cfg" >"$out"
  for node in "$@"; do
    echo "  server r$i $node" >>"$out"
    i=$((i + 1))
  done
}
