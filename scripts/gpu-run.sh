#!/usr/bin/env bash
# The GPU run in one call: needs only python3 (the image's, with torch) and the carried .whl/.
#
#   bash scripts/gpu-run.sh OUT [python -m seqbench.gpu run options, e.g. --budget-s 120]
#
# Installs the wheels in .whl/ (Hydra and what it needs; `make gpu-wheels` fetches them) into
# a temp site dir, runs `python -m seqbench.gpu run --out OUT`, and tees the whole terminal
# into OUT/gpu-run.log. OUT gets seqbench-gpu.tar.gz, packed before the report and again
# after it. PYTHON (default python3) picks the interpreter; WHEELS (default .whl) the wheels.
set -uo pipefail
[ $# -ge 1 ] || { echo "usage: bash scripts/gpu-run.sh OUT [gpu run options]" >&2; exit 2; }
mkdir -p "$1" && out=$(cd "$1" && pwd) || exit 2
shift
cd "$(dirname "$0")/.." || exit 2
python=${PYTHON:-python3}
wheels=${WHEELS:-.whl}
{
    site=$(mktemp -d "${TMPDIR:-/tmp}/seqbench-site.XXXXXX")
    if compgen -G "$wheels/*.whl" >/dev/null; then
        "$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
            --upgrade --target "$site" "$wheels"/*.whl ||
            echo "seqbench: the wheels in $wheels did not install; going on without them"
    else
        echo "seqbench: no wheels in $wheels; using what $python has"
    fi
    PYTHONPATH="$site:$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 \
        "$python" -m seqbench.gpu run --out "$out" "$@"
} 2>&1 | tee "$out/gpu-run.log"
