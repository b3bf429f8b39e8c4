#!/usr/bin/env bash
# Screenshot a report in headless Chromium (Debian package `chromium`; no browser download):
#
#   scripts/report_screenshot.sh REPORT_DIR [OUT.png]
#
# Used to check that titles, colour bars and thumbnails are not clipped.
set -euo pipefail
dir=${1:?usage: $0 REPORT_DIR [OUT.png]}
out=${2:-$dir/screenshot.png}
browser=$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)
if [ -z "$browser" ]; then
  echo "error: no Chromium found (apt-get install chromium)" >&2
  exit 2
fi
"$browser" --headless --no-sandbox --disable-gpu --hide-scrollbars --window-size=1200,2600 \
  --screenshot="$(realpath -m "$out")" "file://$(realpath "$dir")/index.html" 2>/dev/null
echo "wrote $out"
