#!/usr/bin/env bash
# A CPU-only lerobot 0.4.4 environment (default /tmp/lerobot-venv) for tests/compat: raygen does not
# depend on lerobot (it pulls CUDA torch), but its output must load in LeRobotDataset. Needs root (apt).
set -euo pipefail
VENV=${VENV:-/tmp/lerobot-venv}

# 1. FFmpeg 5.1 shared libs for torchcodec (Debian 12; libavcodec59 links libdav1d6 + libaom3).
apt-get update
DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
    libavcodec59 libavformat59 libavutil57 libswscale6 libswresample4 libavdevice59 libavfilter8

# 2. venv + CPU torch (the local file /opt/wheels/torch-2.13.0+cpu-...whl, found via pip's find-links).
python3 -m venv "$VENV"
"$VENV/bin/pip" install torch==2.13.0

# 3. lerobot itself and the two torch-ABI packages WITHOUT deps:
#    lerobot 0.4.4 pins torch<2.11 / torchvision<0.26 / torchcodec<0.11, which would pull CUDA torch.
#    torchvision 0.25.0: PyPI CUDA build; its _C.so/image.so can't load on CPU torch (patched below);
#      it still has torchvision.io.VideoReader, so lerobot's "pyav" backend works.
#    torchcodec 0.13.0: last PyPI build with no CUDA deps; supports torch>=2.11 (stable ABI) and FFmpeg 4-8.
"$VENV/bin/pip" install --no-deps lerobot==0.4.4 torchvision==0.25.0 torchcodec==0.13.0

# 4. The rest of lerobot's runtime deps that lerobot.datasets imports (no torch in this set).
"$VENV/bin/pip" install "numpy<2.3" pillow "datasets>=4.0.0,<5.0.0" "huggingface-hub>=0.34.2,<0.36.0" \
    "av>=15.0.0,<16.0.0" "jsonlines>=4,<5" "packaging>=24.2,<26" "draccus==0.10.0" "einops>=0.8,<0.9" \
    "deepdiff>=7.0.1,<9" "termcolor>=2.4,<4" "setuptools>=71,<81" "accelerate>=1.10.0,<2.0.0"

# 5. torchvision's C ops can't load (they link libtorch_cuda.so), and _meta_registrations.py registers
#    fake kernels for torchvision::nms unconditionally -> "operator torchvision::nms does not exist"
#    on import. Guard those decorators with extension._has_ops() (venv-local patch).
SP=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
sed -i 's/^@torch\.library\.register_fake(\(.*\))$/@(torch.library.register_fake(\1) if torchvision.extension._has_ops() else (lambda f: f))/' \
    "$SP/torchvision/_meta_registrations.py"

# 6. Smoke test.
"$VENV/bin/python" - <<'EOF'
import torch, torchvision, torchcodec, av
from torchcodec.decoders import VideoDecoder
import lerobot.datasets.lerobot_dataset
print("torch", torch.__version__, "cuda", torch.version.cuda, "| torchvision", torchvision.__version__,
      "| torchcodec", torchcodec.__version__, "| av", av.__version__, "| VideoReader", hasattr(torchvision.io, "VideoReader"))
EOF
