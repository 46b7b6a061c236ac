#!/usr/bin/env bash
# Opt-in: replace mmcv-lite with mmcv 2.1.0 built from source with CPU ops (about 20 minutes
# on 2 cores). madm does not need compiled ops; build them only for mmseg heads that do
# (PSA, CC, deformable convs). Usage: bash tools/build_mmcv_ops.sh [VENV]   (default .venv)
set -euo pipefail
VENV=${1:-.venv}
PY="$VENV/bin/python"
[ -x "$PY" ] || { echo "no virtual environment at $VENV: run 'make venv' first" >&2; exit 1; }
# torch, setuptools<81 and ninja must be present *in* the environment: with build isolation
# pip builds without torch and silently produces mmcv without ops.
"$PY" -m pip install -q ninja psutil -c requirements/constraints.txt 2>/dev/null || "$PY" -m pip install -q ninja psutil
"$PY" -m pip uninstall -y mmcv-lite   # both distributions own the mmcv/ package
MMCV_WITH_OPS=1 FORCE_CUDA=${FORCE_CUDA:-0} MAX_JOBS=${MAX_JOBS:-2} \
  "$PY" -m pip install --no-build-isolation --no-cache-dir mmcv==2.1.0
"$PY" -c "import mmcv._ext; print('mmcv compiled ops: OK', mmcv._ext.__file__)"
"$PY" -c "import madm; from madm.utils.mmcv_compat import MMCV_LITE_SHIM_ACTIVE as s; assert not s; print('madm uses the real mmcv.ops')"
