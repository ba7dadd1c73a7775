#!/usr/bin/env bash
# Build llama-cpp-python once per machine with a portable CPU backend, then install it.
#
# Why not a plain `pip install llama-cpp-python`: its default native build enables ggml's AMX
# kernels on CPUs that advertise AMX, and on virtual machines that do not grant AMX tile state
# to the process those kernels segfault on the first decode. We build with GGML_NATIVE=OFF and
# AVX2/FMA/F16C (every x86-64 server of the last decade), and keep the wheel in our own cache
# directory so pip's generic wheel cache (which ignores CMAKE_ARGS) can never hand back a
# natively built one.
set -euo pipefail

PY=${1:?usage: install-llama-cpp.sh PYTHON [EXTRAS]}
EXTRAS=${2:-}
VERSION=0.3.36
ARCH=$(uname -m)
if [ "$ARCH" = "x86_64" ]; then
  FLAGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_AVX512=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF"
  TAG=portable-avx2
else
  FLAGS="-DGGML_NATIVE=OFF"
  TAG=portable
fi
CACHE=${SWITCHYARD_WHEEL_CACHE:-$HOME/.cache/switchyard/wheels}/llama-cpp-python-$VERSION-$TAG

if "$PY" -c "import llama_cpp, pathlib, sys; sys.exit(0 if llama_cpp.__version__ == '$VERSION' and pathlib.Path(llama_cpp.__file__).with_name('switchyard-build-$TAG').exists() else 1)" 2>/dev/null; then
  [ -z "$EXTRAS" ] || "$PY" -m pip install -q "llama-cpp-python[$EXTRAS]==$VERSION" --find-links "$CACHE" --no-index 2>/dev/null \
    || "$PY" -m pip install -q "llama-cpp-python[$EXTRAS]==$VERSION" --find-links "$CACHE"
  exit 0
fi

if ! ls "$CACHE"/llama_cpp_python-*.whl >/dev/null 2>&1; then
  echo "building llama-cpp-python $VERSION ($TAG); this takes about 5-6 minutes on 2 cores, once per machine"
  mkdir -p "$CACHE"
  CMAKE_ARGS="$FLAGS" "$PY" -m pip wheel -q --no-deps --no-cache-dir "llama-cpp-python==$VERSION" -w "$CACHE"
fi
SPEC="llama-cpp-python==$VERSION"
[ -z "$EXTRAS" ] || SPEC="llama-cpp-python[$EXTRAS]==$VERSION"
"$PY" -m pip install -q --force-reinstall --no-deps "$CACHE"/llama_cpp_python-*.whl
"$PY" -m pip install -q "$SPEC" --find-links "$CACHE"
touch "$("$PY" -c "import llama_cpp, pathlib; print(pathlib.Path(llama_cpp.__file__).with_name('switchyard-build-$TAG'))")"
