#!/usr/bin/env bash
# Installs Debian's chromium, the browser server/e2e/page.mjs drives (through playwright-core)
# to test fksteer serve's web page in CI. A developer's machine with chromium elsewhere can set
# CHROMIUM=/path/to/chromium instead.
#
# Usage (as root): scripts/install-browser.sh
set -euo pipefail

if command -v chromium >/dev/null; then
  echo "chromium already installed: $(chromium --version 2>/dev/null || true)"
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "install-browser: run as root (it installs Debian packages), or set CHROMIUM to a chromium binary" >&2
  exit 1
fi
command -v apt-get >/dev/null || { echo "install-browser: needs Debian's apt-get; elsewhere install chromium and set CHROMIUM" >&2; exit 1; }
apt-get update -q
DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium nodejs npm
