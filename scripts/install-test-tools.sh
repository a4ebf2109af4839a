#!/usr/bin/env bash
# Install what some tests drive besides Python (Debian, Ubuntu): headless Chromium and
# chromedriver for tests/ops/test_docs_browser.py, and promtool (package prometheus, whose
# server is not started) for the metrics exposition checks. Does nothing when they are there.
# Never fails the caller: without apt, root or passwordless sudo, or with no package to be
# had, it says so and those tests skip with their reason.
set -uo pipefail

log() { echo "install-test-tools: $*" >&2; }

packages=()
command -v chromium >/dev/null || packages+=(chromium)
command -v chromedriver >/dev/null || packages+=(chromium-driver)
command -v promtool >/dev/null || packages+=(prometheus)
if [ ${#packages[@]} -eq 0 ]; then
  exit 0
fi
if ! command -v apt-get >/dev/null; then
  log "no apt-get on this machine; tests needing ${packages[*]} will skip"
  exit 0
fi
if [ "$(id -u)" = 0 ]; then
  as_root=()
elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
  as_root=(sudo -n)
else
  log "not root and no passwordless sudo; tests needing ${packages[*]} will skip"
  exit 0
fi

log "installing ${packages[*]} with apt"
if "${as_root[@]}" apt-get update -qq \
  && "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null; then
  log "$(chromium --version 2>/dev/null || echo 'no chromium')," \
    "$(promtool --version 2>/dev/null | head -1 || echo 'no promtool')"
else
  log "apt-get could not install ${packages[*]}; the tests needing them will skip"
fi
exit 0
