#!/usr/bin/env bash
# The modelctl workflow on the embedded defaults; grows as the commands land.
set -euo pipefail
cd "$(dirname "$0")/.."
echo "demo: not yet written"
