#!/usr/bin/env bash
# Make sure Debian's `chromium` and `chromium-driver` are present, so the search-page test drives a
# real headless browser (tests/serving/test_page_browser.py) instead of skipping. No browser is
# downloaded at test time: only Debian packages. Best effort: without apt-get or root the test
# skips and says why.
set -uo pipefail
if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then
  exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then SUDO="sudo -n"; else
    echo "chromium missing and no root: the browser test will be skipped" >&2
    exit 0
  fi
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "chromium missing and no apt-get: the browser test will be skipped" >&2
  exit 0
fi
echo "installing the Debian packages chromium and chromium-driver (for the search-page test)"
$SUDO apt-get update -qq >/dev/null 2>&1
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
  chromium chromium-driver fonts-dejavu-core >/dev/null 2>&1 \
  || echo "could not install chromium: the browser test will be skipped" >&2
exit 0
