#!/usr/bin/env bash
# Build the reference environment for thesequencer 0.0.5 with its pins (git-ignored).
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
env="$here/_envs/seqref"
if [ ! -x "$env/bin/python" ]; then
  python3 -m venv "$env"
fi
"$env/bin/pip" install -q "numpy<1.24" "networkx<3" "scipy==1.10.*" "joblib==1.3.*" "thesequencer==0.0.5"
echo "reference environment ready: $env"
