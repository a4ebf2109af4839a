#!/usr/bin/env bash
# Install headless Chromium and chromedriver for tests/ops/test_docs_browser.py (Debian, Ubuntu).
# Does nothing when both are there. Never fails the caller: without apt, root or passwordless
# sudo, or with no package to be had, it says so and the browser test skips with its reason.
set -uo pipefail

log() { echo "install-chromium: $*" >&2; }

if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then
  exit 0
fi
if ! command -v apt-get >/dev/null; then
  log "no apt-get on this machine; the docs browser test will skip"
  exit 0
fi
if [ "$(id -u)" = 0 ]; then
  as_root=()
elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
  as_root=(sudo -n)
else
  log "not root and no passwordless sudo; the docs browser test will skip"
  exit 0
fi

log "installing chromium and chromium-driver with apt"
if "${as_root[@]}" apt-get update -qq \
  && "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -qq chromium chromium-driver >/dev/null; then
  log "$(chromium --version 2>/dev/null || echo chromium installed)"
else
  log "apt-get could not install chromium; the docs browser test will skip"
fi
exit 0
