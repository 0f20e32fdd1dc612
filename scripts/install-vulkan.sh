#!/usr/bin/env bash
# Installs the Vulkan loader and Mesa's software Vulkan driver (lavapipe) on Debian, so that ONNX
# Runtime's WebGPU execution provider has an adapter on a machine without a GPU. CI runs the
# WebGPU conformance tests on it; it proves the GPU code path correct, not fast (lavapipe runs
# shaders on the CPU). Machines with a GPU need only their own Vulkan driver instead.
#
# Dawn (WebGPU's implementation) refuses the lavapipe of Debian 12's own Mesa 22.3
# ("shaderUniform*ArrayDynamicIndexing required"), so on bookworm Mesa comes from
# bookworm-backports (25.x), added with the same mirror as the machine's Debian sources.
#
# Usage (as root): scripts/install-vulkan.sh
set -euo pipefail

if [ "$(id -u)" != 0 ]; then
  echo "install-vulkan: run as root (it installs Debian packages)" >&2
  exit 1
fi
command -v apt-get >/dev/null || { echo "install-vulkan: needs Debian's apt-get; elsewhere install your distribution's Vulkan loader and Mesa (>= 23) Vulkan drivers" >&2; exit 1; }

# Mesa 23 or newer already installed: nothing to do.
have=$(dpkg-query -W -f '${Version}' mesa-vulkan-drivers 2>/dev/null || true)
if [ -n "$have" ] && dpkg --compare-versions "$have" ge 23 && dpkg-query -W libvulkan1 >/dev/null 2>&1; then
  echo "Vulkan loader and Mesa $have Vulkan drivers already installed"
  exit 0
fi

. /etc/os-release
target=()
if [ "${VERSION_CODENAME:-}" = bookworm ]; then
  list=/etc/apt/sources.list.d/fksteer-bookworm-backports.sources
  if ! grep -rqs 'bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/; then
    # The mirror of the configured Debian sources (deb822 or one-line format).
    mirror=$(grep -hs '^URIs:' /etc/apt/sources.list.d/*.sources | grep -v security | head -n1 | awk '{print $2}')
    if [ -z "$mirror" ]; then
      mirror=$(grep -hsE '^deb [^ ]+ bookworm ' /etc/apt/sources.list | head -n1 | awk '{print $2}')
    fi
    mirror=${mirror:-http://deb.debian.org/debian}
    cat >"$list.tmp" <<EOF
Types: deb
URIs: $mirror
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
    mv "$list.tmp" "$list"
  fi
  target=(-t bookworm-backports)
fi
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${target[@]}" mesa-vulkan-drivers libvulkan1 >/dev/null
echo "Installed the Vulkan loader and Mesa $(dpkg-query -W -f '${Version}' mesa-vulkan-drivers) Vulkan drivers (lavapipe)"
