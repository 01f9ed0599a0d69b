#!/bin/sh
# Creates the virtual environment bench/peers.py runs in: PyTorch (latest) and numpy from PyPI.
# usage: bench/peers_venv.sh [DIR]   (default build/peers-venv; the tests never need it)
set -e
dir="${1:-build/peers-venv}"
python3 -m venv "$dir"
"$dir/bin/pip" install --quiet --upgrade pip
"$dir/bin/pip" install --quiet torch numpy
"$dir/bin/python" -c 'import torch; print("peers venv:", torch.__version__, "in", "'"$dir"'")'
