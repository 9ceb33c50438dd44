#!/usr/bin/env bash
# One command for a GPU session: the CUDA tests, the VAE step (MLP and conv) and the GAN step
# on the device, every figure appended to one file. Sized to finish in at most 7 minutes on one
# GPU (an H200 here); --quick is the CPU rehearsal that checks the script itself.
#
#   bash benchmarks/gpu_check.sh                          # on the GPU machine: figures in gpu_check.txt
#   bash benchmarks/gpu_check.sh --device cpu --quick     # rehearsal on the CPU, a minute or two
#   bash benchmarks/gpu_check.sh --out "$OUT/gpu_check.txt"
#
# GPU targets: eager pyrogen at most 1.3x a plain eager PyTorch step, compiled at most
# 1.0x, compiled with CUDA graphs at most 0.5x, and at least 3x faster than Pyro's tutorial loop.
# Mixed precision: the MLP step also under bfloat16 autocast (plain and pyrogen rows), the
# default VAE trained at --precision 32, bf16 and fp16 (benchmarks/precision_run.py: epoch time and
# test ELBO against float32's), and the Lightning path against TorchSVI in bf16. Last, 1 and 3 CPU
# trainings at once on the machine's own cores (benchmarks.contention). These sections have
# been rehearsed on the CPU (--device cpu --quick) but not yet run on a GPU.
set -uo pipefail
cd "$(dirname "$0")/.."

device=cuda
quick=0
out=gpu_check.txt
python=${PYTHON:-.venv/bin/python}
while [ $# -gt 0 ]; do
  case "$1" in
    --device) device=$2; shift 2 ;;
    --quick) quick=1; shift ;;
    --out) out=$2; shift 2 ;;
    *) echo "gpu_check.sh: unknown argument $1 (expected --device cpu|cuda, --quick, --out FILE)" >&2; exit 2 ;;
  esac
done
if [ "$device" != cpu ] && [ "$device" != cuda ]; then
  echo "gpu_check.sh: --device must be cpu or cuda, got $device" >&2
  exit 2
fi

if [ "$quick" = 1 ]; then
  vae_mlp=(--epochs 1 --train-size 2000 --block 5 --eval-samples 5 --target-images 500)
  vae_conv=(--epochs 1 --train-size 500 --block 2)
  gan=(--steps 2 --rounds 2)
  precision=(--epochs 1 --train-size 1000 --test-size 500)
  lightning=(--blocks 2 --block 3 --train-size 1000)
  contention=(--train-size 300 --test-size 300 --counts 1 2)
else
  vae_mlp=(--epochs 3 --eval-samples 100)
  vae_conv=(--epochs 1 --train-size 20000)
  gan=(--steps 20 --rounds 15)
  precision=(--epochs 3)
  lightning=(--blocks 10 --block 50)
  contention=(--counts 1 3)
fi
lightning_precision=()
if [ "$device" = cuda ]; then lightning_precision=(--precision bf16); fi
extra=()
if [ "$device" = cuda ]; then extra=(--cudagraphs); fi

status=0
: >"$out"
section() {
  local title=$1
  shift
  echo "== $title: $*" | tee -a "$out"
  local start=$SECONDS
  "$@" 2>&1 | tee -a "$out"
  local rc=${PIPESTATUS[0]}
  echo "== $title: exit $rc after $((SECONDS - start)) s" | tee -a "$out"
  [ "$rc" = 0 ] || status=1
}

{ echo "pyrogen GPU check, $(date -u +%Y-%m-%dT%H:%MZ), device $device, quick $quick"
  "$python" -c "import torch; print('torch', torch.__version__, '| cuda', torch.cuda.is_available(),
      torch.cuda.get_device_name(0) if torch.cuda.is_available() else '')"; } 2>&1 | tee -a "$out"
if [ "$device" = cuda ]; then
  section "CUDA tests" "$python" -m pytest -q -m cuda -p no:cacheprovider
fi
section "VAE step, MLP" "$python" -m benchmarks.vae_step --device "$device" "${vae_mlp[@]}" "${extra[@]}" --autocast bf16
section "VAE step, conv" "$python" -m benchmarks.vae_step --device "$device" --architecture conv "${vae_conv[@]}" "${extra[@]}"
section "GAN step, DCGAN" "$python" -m benchmarks.gan_step --device "$device" "${gan[@]}"
section "VAE training at each precision (32, bf16, fp16)" "$python" -m benchmarks.precision_run --device "$device" "${precision[@]}"
section "Lightning step vs TorchSVI" "$python" -m benchmarks.lightning_step --device "$device" "${lightning[@]}" "${lightning_precision[@]}"
section "CPU trainings sharing this machine's cores" "$python" -m benchmarks.contention jobs --device cpu \
  --settings default threads1 "${contention[@]}"
echo "figures written to $out"
exit $status
