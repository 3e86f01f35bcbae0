#!/usr/bin/env bash
# The trainer on a real GPU, in one run on a device machine (docs/benchmarks.md, "WebGPU on a GPU").
# Prepared here, run there with the device tool:
#   once, here:  echo /.gl/ >>.git/info/exclude; mkdir -p .gl /tmp/amd64/partial
#                o='-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/amd64'
#                apt-get $o update; (cd .gl && apt-get $o download libvulkan1)
#   there:       run(command='bash scripts/device-check.sh', carry=['.gl', 'node_modules', 'dist'])
# Steps, each logged to $OUT/device-check/*.log, stopping at the first failure:
#   1. the Vulkan loader (carried .debs) and the NVIDIA ICD;
#   2. Dawn (the `webgpu` package) must see a hardware adapter, not a software one: its info is printed;
#   3. the webgpu correctness tests (matmuls and gradients against float64; a DoRA run lowering held-out loss);
#   4. bench:train on webgpu at GPT-2-small size (12 × 768) and 24 × 1024;
#   5. reproduce --quick on webgpu, end to end.
# DEVICE_CHECK_ALLOW_SOFTWARE=1 lets step 2 accept a software adapter (to try the script without a GPU);
# DEVICE_CHECK_SMALL=1 shrinks step 4's models and skips step 5 for that.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-/tmp/device-check-out}"
LOG="$OUT/device-check"
mkdir -p "$LOG"
started=$SECONDS
step() { echo "== $(( SECONDS - started )) s: $*" | tee -a "$LOG/steps.log"; }

step "1. Vulkan loader"
if [ -d .gl ] && ! ldconfig -p | grep -q libvulkan; then
  for f in .gl/*.deb; do dpkg -x "$f" /; done
  ldconfig
fi
if [ -f /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json ] && [ -z "${VK_DRIVER_FILES:-}" ]; then
  export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
fi
ldconfig -p | grep libvulkan | tee "$LOG/vulkan.log"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>&1 | tee "$LOG/nvidia-smi.log" || true

step "2. Dawn's adapter"
node --input-type=module -e "
  const { create, globals } = await import('webgpu');
  Object.assign(globalThis, globals);
  const gpu = create([]);
  const a = await gpu.requestAdapter({ powerPreference: 'high-performance' });
  if (!a) { console.error('no WebGPU adapter'); process.exit(1); }
  const info = a.info ?? {};
  console.log(JSON.stringify({ vendor: info.vendor, architecture: info.architecture, device: info.device, description: info.description, fallback: a.isFallbackAdapter ?? info.isFallbackAdapter ?? null }));
  const software = a.isFallbackAdapter || info.isFallbackAdapter || /llvmpipe|swiftshader|software/i.test(JSON.stringify(info));
  if (software && process.env.DEVICE_CHECK_ALLOW_SOFTWARE !== '1') { console.error('a software adapter, not the GPU'); process.exit(1); }
" 2>&1 | tee "$LOG/adapter.log"

step "3. webgpu correctness tests"
[ -d dist ] || npm run build >"$LOG/build.log" 2>&1
npx vitest run test/compute/backend.test.ts test/train/loop.test.ts 2>&1 | tee "$LOG/tests.log"

step "4. bench:train on webgpu"
if [ "${DEVICE_CHECK_SMALL:-0}" = 1 ]; then sizes=("2 64 4 32"); else sizes=("12 768 16 256" "24 1024 16 256"); fi
for s in "${sizes[@]}"; do
  read -r layers dmodel batch context <<<"$s"
  npm run bench:train -- --backends webgpu --layers "$layers" --d-model "$dmodel" --batch "$batch" --context "$context" --steps 10 \
    2>&1 | tee "$LOG/bench-train-${layers}x${dmodel}.log"
done

if [ "${DEVICE_CHECK_SMALL:-0}" = 1 ]; then step "done (small: no reproduce)"; exit 0; fi
step "5. reproduce --quick on webgpu"
node bin/dorascope.js reproduce --quick --backend webgpu --out "$OUT/reproduce-quick" 2>&1 | tee "$LOG/reproduce.log"
grep -q 'Backend: webgpu' "$OUT/reproduce-quick/README.md"

step "done"
