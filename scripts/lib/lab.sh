# Running the network lab's ignored tests from a script (sourced after scripts/lib/procs.sh,
# not run), as scripts/demo and scripts/bench-failover --lab do: whether the lab can be made
# here, and where a lab test says it could not run after all.
# shellcheck shell=bash

# Why the lab cannot be made here (empty when it can): it needs root, to make network
# namespaces.
lab_unavailable() {
  local probe="rfp-lab-probe-$$" out
  if [ "$(id -u)" != 0 ]; then
    echo "not root"
  elif ! out="$(ip netns add "$probe" 2>&1)"; then
    echo "'ip netns add' failed: $out"
  else
    ip netns del "$probe"
  fi
}

# The marker lab test $1 leaves when it could not run (tests/support's not_run writes it under
# target/not-run beside Cargo.toml, whatever CARGO_TARGET_DIR says; scripts/test lists them).
lab_marker() {
  echo "$ROOT_DIR/target/not-run/$1"
}
