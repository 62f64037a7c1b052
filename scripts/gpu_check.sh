#!/usr/bin/env bash
# Prove the CUDA path in one offline command, then read OUT_DIR/gpu_report.md (and gpu_report.json):
#   MNISTLAB_DATA_DIR=/path/to/data bash scripts/gpu_check.sh OUT_DIR [WHEELS_DIR] [--cpu]
# 1. installs what is missing, offline: mnistlab (--no-deps) and the wheels of scripts/gpu_wheels.txt
#    from WHEELS_DIR (made by scripts/gpu_wheels.sh), into a temporary folder put on PYTHONPATH;
# 2. runs `pytest -m gpu` (real MNIST from $MNISTLAB_DATA_DIR/mnist);
# 3. runs benchmarks/benchmark.py device=cuda: batch 32, batch 512 and experiment=notebook_hidden;
# 4. writes the report, with each package the check uses (the host's own: torch, Pillow, onnx, pytest...)
#    judged against pyproject.toml's range: one outside it is reported, not a failure (the image stays).
#    Exit code: the worst of the steps'.
# --cpu: a dry run of every step on the CPU (GPU tests skipped, benchmarks of a few steps), which
# tests/test_gpu_check.py runs so that this script cannot rot. PYTHON picks the interpreter (python3).
set -uo pipefail
start=$SECONDS
repo=$(cd "$(dirname "$0")/.." && pwd)
python=${PYTHON:-python3}
mode=gpu
args=()
for a in "$@"; do
  if [ "$a" = --cpu ]; then mode=cpu; else args+=("$a"); fi
done
out=${args[0]:-}
wheels=${args[1]:-}
[ -n "$out" ] || { echo "usage: bash scripts/gpu_check.sh OUT_DIR [WHEELS_DIR] [--cpu]" >&2; exit 2; }
[ -f "${MNISTLAB_DATA_DIR:-}/mnist/train-images-idx3-ubyte.gz" ] || {
  echo "error: MNIST not found: set MNISTLAB_DATA_DIR to a folder holding mnist/train-images-idx3-ubyte.gz" >&2
  exit 2
}
export MNISTLAB_DATA_DIR PYTHONUNBUFFERED=1 PIP_ROOT_USER_ACTION=ignore PIP_DISABLE_PIP_VERSION_CHECK=1
mkdir -p "$out/logs"
out=$(cd "$out" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
: >"$work/steps.tsv"
if [ $mode = cpu ]; then
  export CUDA_VISIBLE_DEVICES=""  # torch sees no GPU: the gpu tests skip, the benchmark runs on the CPU
  device=cpu
  few_steps=(epochs=1 warmup=1 data.batch_size=5500)  # 55k / 5,500: 10 optimizer steps per epoch
  workers=2
else
  device=cuda
  few_steps=()
  # The GPU tests are mostly short training runs in subprocesses (~17 s each on an H200 host, mostly
  # start-up): one after another they outran this step's limit (2026-12-04). Four at a time share the GPU,
  # so their fit_seconds in the report are shared-GPU figures; the benchmarks below run alone.
  workers=4
fi

# step NAME LOG RESULT_JSON CMD...: runs CMD with its output in LOG and records it in steps.tsv.
step() {
  local name=$1 log=$2 result=$3 t0=$SECONDS rc
  shift 3
  echo "== $name"
  "$@" >"$log" 2>&1
  rc=$?
  printf '%s\t%s\t%s\t%s\t%s\n' "$name" "$rc" $((SECONDS - t0)) "$log" "$result" >>"$work/steps.tsv"
  [ $rc = 0 ] || { echo "   exit code $rc, see $log"; tail -n 5 "$log"; }
  return $rc
}

install() {
  local site=$work/site missing
  export PYTHONPATH=$site${PYTHONPATH:+:$PYTHONPATH}
  # Packages of scripts/gpu_wheels.txt that this interpreter lacks or has outside pyproject.toml's ranges.
  missing=$("$python" "$repo/scripts/gpu_wheels.py" missing) || return 1
  if [ -n "$missing" ]; then
    [ -n "$wheels" ] || { echo "error: missing $(echo $missing) and no WHEELS_DIR given (scripts/gpu_wheels.sh)"; return 2; }
    echo "installing from $wheels: $(echo $missing)"
    # shellcheck disable=SC2086  # one argument per requirement; pip takes the newest wheel in range
    "$python" -m pip install -q --no-index --no-deps --no-compile --find-links "$wheels" --target "$site" $missing \
      || return 1
  fi
  if "$python" -c "import mnistlab, sys; sys.exit(not mnistlab.__file__.startswith('$repo/src/'))" 2>/dev/null; then
    echo "mnistlab already importable from $repo/src"
  elif ! "$python" -m pip install -q --no-index --no-deps --no-build-isolation --target "$site" "$repo"; then
    # A check of the CUDA path, not of packaging: go on with the source tree, said in the log and the report.
    echo "pip could not install mnistlab (above): using $repo/src through PYTHONPATH"
    export PYTHONPATH=$PYTHONPATH:$repo/src
  fi
  "$python" -c "import hydra, omegaconf, optuna, mnistlab; print('mnistlab from', mnistlab.__file__)"
}

# The install sets PYTHONPATH for every later step, so it runs in this shell, not a subshell.
step install "$out/logs/install.log" - install
cd "$repo" || exit 1
# Guards against a hang (a stuck NCCL start, say), so that the report is still written within 10 minutes.
step "pytest -m gpu" "$out/logs/pytest.log" - timeout 280 \
  "$python" -m pytest -v -m gpu tests -n $workers -p no:cacheprovider -o junit_family=xunit1 --junitxml="$work/junit.xml"
for bench in "batch 32" "batch 512:data.batch_size=512" "experiment=notebook_hidden:experiment=notebook_hidden"; do
  label=${bench%%:*}
  file=bench_$(echo "${bench%%:*}" | tr -c 'a-z0-9\n' '_')
  overrides=()
  [ "$bench" = "$label" ] || overrides=("${bench#*:}")
  step "benchmark: $label" "$out/logs/$file.log" "$work/$file.json" timeout 100 \
    "$python" benchmarks/benchmark.py device=$device "${overrides[@]}" "${few_steps[@]}" json="$work/$file.json" \
    hydra.run.dir="$work/$file" callbacks.progress_bar.refresh_rate=0
done
# Against pyproject.toml's ranges, with the PYTHONPATH of the install: the report lists each package the check used.
"$python" "$repo/scripts/gpu_wheels.py" judge "$work/site" >"$work/packages.json" 2>>"$out/logs/install.log" \
  || rm -f "$work/packages.json"
"$python" "$repo/benchmarks/gpu_report.py" "$work" "$out" $mode $((SECONDS - start)) || exit 1
rc=$(cut -f2 "$work/steps.tsv" | sort -n | tail -n 1)
echo "wrote $out/gpu_report.md and gpu_report.json in $((SECONDS - start)) s (exit code $rc)"
exit "$rc"
