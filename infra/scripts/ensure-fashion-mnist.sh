#!/usr/bin/env bash
# Make sure the Fashion-MNIST IDX files are present: $ODH_FASHION_MNIST if set, else the Debian
# package dataset-fashion-mnist (installed with apt-get when missing and we may install packages).
set -euo pipefail
dir="${ODH_FASHION_MNIST:-/usr/share/datasets/fashion-mnist}"
if [ -f "$dir/train-images-idx3-ubyte.gz" ]; then
  echo "Fashion-MNIST: $dir"
  exit 0
fi
if [ -n "${ODH_FASHION_MNIST:-}" ]; then
  echo "ODH_FASHION_MNIST=$ODH_FASHION_MNIST holds no train-images-idx3-ubyte.gz" >&2
  exit 1
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo -n"; else
    echo "Fashion-MNIST missing: install the Debian package dataset-fashion-mnist, or set ODH_FASHION_MNIST" >&2
    exit 1
  fi
fi
echo "installing the Debian package dataset-fashion-mnist"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq dataset-fashion-mnist >/dev/null
test -f "$dir/train-images-idx3-ubyte.gz"
echo "Fashion-MNIST: $dir"
