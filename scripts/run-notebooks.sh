#!/usr/bin/env bash
# Executes every notebook in notebooks/ headlessly with Debian's `jupyter-nbconvert`: the TypeScript ones
# with Deno's Jupyter kernel (from the `deno` npm package: its binary ships inside the registry package,
# nothing is downloaded), the Python ones (explore.ipynb) with ipykernel on a python3 that has pandas and
# matplotlib; fails on the first cell error. Executed copies go to
# test-output/notebooks/ (the notebooks in git keep their outputs cleared).
#
#   scripts/run-notebooks.sh [NOTEBOOK...]
# Needs: `npm install` done, `apt-get install jupyter-nbconvert` (CI does both), and for Python notebooks
# `apt-get install python3-pandas python3-matplotlib python3-ipykernel`. Builds dist/ if missing.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

nbconvert=""
if command -v jupyter-nbconvert >/dev/null 2>&1; then nbconvert=$(command -v jupyter-nbconvert)
elif [ -x /usr/bin/jupyter-nbconvert ]; then nbconvert=/usr/bin/jupyter-nbconvert
else
  echo "run-notebooks: jupyter-nbconvert not found (apt-get install jupyter-nbconvert)" >&2
  exit 3
fi
if [ $# -gt 0 ]; then notebooks=("$@"); else notebooks=(notebooks/*.ipynb); fi
is_python() { grep -q '"language": "python"' "$1"; }
need_deno=0 need_python=0
for nb in "${notebooks[@]}"; do if is_python "$nb"; then need_python=1; else need_deno=1; fi; done

# Deno's Linux x64 build, an optional npm dependency (the binary ships inside the registry package).
deno="$root/node_modules/@deno/linux-x64-glibc/deno"
if [ "$need_deno" = 1 ] && [ ! -x "$deno" ]; then
  echo "run-notebooks: Deno is not installed (npm install on Linux x64 installs @deno/linux-x64-glibc)" >&2
  exit 3
fi
# The first python3 with what explore.ipynb imports (Debian's, when a pyenv or venv python3 comes first on PATH).
python=""
if [ "$need_python" = 1 ]; then
  for c in "$(command -v python3 || true)" /usr/bin/python3; do
    if [ -n "$c" ] && "$c" -c 'import pandas, matplotlib, ipykernel' >/dev/null 2>&1; then python=$c; break; fi
  done
  if [ -z "$python" ]; then
    echo "run-notebooks: no python3 with pandas, matplotlib and ipykernel (apt-get install python3-pandas python3-matplotlib python3-ipykernel)" >&2
    exit 3
  fi
fi
[ -f dist/index.js ] || npm run build --silent

# A private kernelspec: nothing is installed into the user's Jupyter folders.
kdir=$(mktemp -d "${TMPDIR:-/tmp}/dorascope-jupyter.XXXXXX")
trap 'rm -rf "$kdir"' EXIT
mkdir -p "$kdir/kernels/dorascope-deno"
cat > "$kdir/kernels/dorascope-deno/kernel.json" <<JSON
{"argv": ["$deno", "jupyter", "--kernel", "--conn", "{connection_file}"],
 "display_name": "TypeScript (Deno)", "language": "typescript",
 "env": {"DENO_NO_UPDATE_CHECK": "1", "DENO_NO_PROMPT": "1"}}
JSON
mkdir -p "$kdir/kernels/dorascope-python"
cat > "$kdir/kernels/dorascope-python/kernel.json" <<JSON
{"argv": ["${python:-python3}", "-m", "ipykernel_launcher", "-f", "{connection_file}"],
 "display_name": "Python 3", "language": "python", "env": {"PYDEVD_DISABLE_FILE_VALIDATION": "1"}}
JSON
export JUPYTER_PATH="$kdir${JUPYTER_PATH:+:$JUPYTER_PATH}"
export JUPYTER_DATA_DIR="$kdir" JUPYTER_RUNTIME_DIR="$kdir/runtime"
export DENO_NO_UPDATE_CHECK=1 DENO_NO_PROMPT=1

out="$root/test-output/notebooks"
mkdir -p "$out"
for nb in "${notebooks[@]}"; do
  echo "run-notebooks: executing $nb"
  start=$(date +%s)
  if is_python "$nb"; then kernel=dorascope-python; else kernel=dorascope-deno; fi
  ( cd "$(dirname "$nb")" && "$nbconvert" --to notebook --execute \
      --ExecutePreprocessor.kernel_name=$kernel --ExecutePreprocessor.timeout=600 \
      --output-dir "$out" --output "$(basename "$nb")" "$(basename "$nb")" )
  echo "run-notebooks: ok $nb ($(( $(date +%s) - start )) s) -> $out/$(basename "$nb")"
done
