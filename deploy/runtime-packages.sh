#!/usr/bin/env bash
# runtime-packages.sh DIR — the Debian/Ubuntu packages that hold the shared libraries the programs
# in DIR link (ldd → dpkg -S), one per line: what the runtime image installs, so it carries exactly
# what the binaries need on either base (Debian 12, Ubuntu 24.04) without a hand-kept list.
set -euo pipefail
for f in "$1"/*; do ldd "$f"; done | awk '/=> \// {print $3}' | sort -u | while read -r lib; do
  # dpkg records a library under /lib or /usr/lib depending on the package (merged /usr).
  dpkg -S "$lib" 2>/dev/null || dpkg -S "$(realpath "$lib")" 2>/dev/null \
    || dpkg -S "/usr$lib" 2>/dev/null || echo "runtime-packages.sh: no package owns $lib" >&2
done | cut -d: -f1 | sort -u
