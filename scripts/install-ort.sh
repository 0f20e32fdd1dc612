#!/usr/bin/env bash
# Installs the official ONNX Runtime build for Linux x64 into fksteer's cache: the CPU and WebGPU
# execution providers (WebGPU runs on any GPU with a Vulkan driver).
#
# The library is taken from the npm package onnxruntime-node, which ships Microsoft's release
# build; `npm pack` downloads the tarball without running its install scripts. The version is
# pinned to the C API that github.com/yalue/onnxruntime_go (see go.mod) was written against, and
# the library is checked against the sha256 below before it is put in place. 1.31.1, not the
# 1.24.1 of earlier fksteer: 1.24.1's WebGPU provider crashes (SIGBUS in Run) on the built-in
# glyphs model and 1.30.0's crashes creating its session (and the SD text encoders'); 1.31.1
# runs every model of the conformance suite (models/conformance_test.go).
#
# Usage: scripts/install-ort.sh [DEST_DIR]
#   DEST_DIR defaults to ${FKSTEER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/fksteer}/onnxruntime/$ORT_VERSION
set -euo pipefail

ORT_VERSION=1.31.1
ORT_SHA256=f19a4da48c4c65e0cdccff82354482f657fa91a3455b66174195b94ca55b0e6f
LIB=libonnxruntime.so.1

cache=${FKSTEER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/fksteer}
dest=${1:-$cache/onnxruntime/$ORT_VERSION}

if [ -f "$dest/$LIB" ] && echo "$ORT_SHA256  $dest/$LIB" | sha256sum -c --status; then
  echo "ONNX Runtime $ORT_VERSION already installed: $dest/$LIB"
  exit 0
fi
case "$(uname -s)-$(uname -m)" in
  Linux-x86_64) ;;
  *) echo "install-ort: only Linux x86_64 is packaged here; install ONNX Runtime $ORT_VERSION yourself and set FKSTEER_ORT_LIB to its shared library" >&2; exit 1 ;;
esac
command -v npm >/dev/null || { echo "install-ort: npm is needed to fetch onnxruntime-node (apt-get install npm)" >&2; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent "onnxruntime-node@$ORT_VERSION" >/dev/null)
tar -xzf "$work/onnxruntime-node-$ORT_VERSION.tgz" -C "$work" "package/bin/napi-v6/linux/x64/$LIB"
got=$(sha256sum "$work/package/bin/napi-v6/linux/x64/$LIB" | cut -d' ' -f1)
if [ "$got" != "$ORT_SHA256" ]; then
  echo "install-ort: checksum mismatch for $LIB: got $got, want $ORT_SHA256" >&2
  exit 1
fi
mkdir -p "$dest"
# Copy then rename, so an interrupted install never leaves a half-written library in place.
cp "$work/package/bin/napi-v6/linux/x64/$LIB" "$dest/.$LIB.tmp"
mv "$dest/.$LIB.tmp" "$dest/$LIB"
echo "ONNX Runtime $ORT_VERSION installed: $dest/$LIB"
