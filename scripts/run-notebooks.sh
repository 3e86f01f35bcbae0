#!/usr/bin/env bash
# Executes every notebook in notebooks/ headlessly with a real TypeScript kernel (Deno's Jupyter kernel,
# from the `deno` npm package: its binary ships inside the registry package, nothing is downloaded) and
# Debian's `jupyter-nbconvert`; fails on the first cell error. Executed copies go to
# test-output/notebooks/ (the notebooks in git keep their outputs cleared).
#
#   scripts/run-notebooks.sh [NOTEBOOK...]
# Needs: `npm install` done, `apt-get install jupyter-nbconvert` (CI does both). Builds dist/ if missing.
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
# Deno's Linux x64 build, an optional npm dependency (the binary ships inside the registry package).
deno="$root/node_modules/@deno/linux-x64-glibc/deno"
if [ ! -x "$deno" ]; then
  echo "run-notebooks: Deno is not installed (npm install on Linux x64 installs @deno/linux-x64-glibc)" >&2
  exit 3
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
export JUPYTER_PATH="$kdir${JUPYTER_PATH:+:$JUPYTER_PATH}"
export JUPYTER_DATA_DIR="$kdir" JUPYTER_RUNTIME_DIR="$kdir/runtime"
export DENO_NO_UPDATE_CHECK=1 DENO_NO_PROMPT=1

out="$root/test-output/notebooks"
mkdir -p "$out"
if [ $# -gt 0 ]; then notebooks=("$@"); else notebooks=(notebooks/*.ipynb); fi
for nb in "${notebooks[@]}"; do
  echo "run-notebooks: executing $nb"
  start=$(date +%s)
  ( cd "$(dirname "$nb")" && "$nbconvert" --to notebook --execute \
      --ExecutePreprocessor.kernel_name=dorascope-deno --ExecutePreprocessor.timeout=600 \
      --output-dir "$out" --output "$(basename "$nb")" "$(basename "$nb")" )
  echo "run-notebooks: ok $nb ($(( $(date +%s) - start )) s) -> $out/$(basename "$nb")"
done
