#!/usr/bin/env bash
# Idempotently install the headless browser the dashboard tests drive: Debian's Chromium (Playwright
# is pointed at /usr/bin/chromium; its own browser download cannot work here) and a CJK font, without
# which every Japanese glyph renders as a box in the screenshots. Runs as root (apt-get).
set -euo pipefail
say() { printf '\033[1m[browser]\033[0m %s\n' "$*" >&2; }

CHROMIUM=${GUARDRAIL_CHROMIUM:-/usr/bin/chromium}
missing=()
[ -x "$CHROMIUM" ] || missing+=(chromium)
dpkg-query -W -f='${Status}' fonts-noto-cjk 2>/dev/null | grep -q "install ok installed" || missing+=(fonts-noto-cjk)

if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    say "missing ${missing[*]}: run this script as root (it uses apt-get)"; exit 1
  fi
  say "installing ${missing[*]} with apt-get (≈30 s)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null || apt-get update
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  say "chromium and fonts-noto-cjk already installed"
fi

# Check the binary really renders a page headless, not only that a file is there.
profile=$(mktemp -d)
trap 'rm -rf "$profile"' EXIT
dom=$(timeout 60 "$CHROMIUM" --headless --no-sandbox --disable-gpu --disable-background-networking \
      --disable-component-update --no-first-run --disable-sync --user-data-dir="$profile" \
      --dump-dom 'data:text/html,<p>guardrail-ok</p>' 2>/dev/null) || true
case "$dom" in
  *guardrail-ok*) ;;
  *) say "$CHROMIUM did not render a page headless"; exit 1 ;;
esac
say "$("$CHROMIUM" --version 2>/dev/null) at $CHROMIUM renders headless"
