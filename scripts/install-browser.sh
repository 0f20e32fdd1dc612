#!/usr/bin/env bash
# Installs what the server's end-to-end tests need from Debian: chromium (the browser
# server/e2e/page.mjs drives through playwright-core) and node with npm (for make e2e-deps). A
# developer's machine with chromium elsewhere can set CHROMIUM=/path/to/chromium instead.
#
# Usage (as root): scripts/install-browser.sh
set -euo pipefail

need=()
command -v chromium >/dev/null || need+=(chromium)
command -v node >/dev/null || need+=(nodejs)
command -v npm >/dev/null || need+=(npm)
if [ ${#need[@]} = 0 ]; then
  echo "chromium, node and npm already installed: $(chromium --version 2>/dev/null || true)"
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "install-browser: run as root to install ${need[*]} (Debian packages), or set CHROMIUM to a chromium binary" >&2
  exit 1
fi
command -v apt-get >/dev/null || { echo "install-browser: needs Debian's apt-get; elsewhere install ${need[*]} and set CHROMIUM" >&2; exit 1; }
apt-get update -q
DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need[@]}"
