#!/usr/bin/env bash
# On a machine with internet: download the wheels an offline GPU host lacks (scripts/gpu_wheels.txt), in the
# versions pip resolves today from pyproject.toml's ranges (scripts/gpu_wheels.py resolve).
#   bash scripts/gpu_wheels.sh DIR    # then, on the host: bash scripts/gpu_check.sh OUT_DIR DIR
set -euo pipefail
dir=${1:?usage: bash scripts/gpu_wheels.sh DIR}
here="$(cd "$(dirname "$0")" && pwd)"
python=${PYTHON:-python3}
mkdir -p "$dir"
pins=$("$python" "$here/gpu_wheels.py" resolve)
sdist_names=$(sed 's/#.*//' "$here/gpu_wheels.txt" | awk 'NF && $2 == "sdist" {print $1}')
wheels=() sdists=()
for pin in $pins; do
  if grep -qxF "${pin%%==*}" <<<"$sdist_names"; then sdists+=("$pin"); else wheels+=("$pin"); fi
done
echo "resolved: $(echo $pins)"
"$python" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d "$dir" "${wheels[@]}"
# Pure-Python source distributions give a py3-none-any wheel whatever Python builds it.
[ ${#sdists[@]} = 0 ] || "$python" -m pip wheel -q --no-deps --no-binary=:all: -w "$dir" "${sdists[@]}"
ls -l "$dir"/*.whl
total=$(cat "$dir"/*.whl | wc -c)
echo "$(ls "$dir"/*.whl | wc -l) wheels, $total bytes"
[ "$total" -lt 20000000 ] || { echo "error: $total bytes, over the 20 MB budget" >&2; exit 1; }
