#!/usr/bin/env bash
# The project's checks: formatting, lints, and every test. Run as root: the
# integration tests build network namespaces and open raw sockets.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
if [ "$(id -u)" -ne 0 ]; then
  echo "test.sh: run as root (sudo scripts/test.sh): the integration tests build network namespaces" >&2
  exit 1
fi
cargo fmt --check
cargo clippy --all-targets -- -D warnings
cargo test --all-targets
