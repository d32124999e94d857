#!/usr/bin/env bash
# Uninstall dreamtray for this user, on Linux or macOS.
#
#   installer/uninstall.sh [--purge]
#
# Removes dreamtray's environment, its launcher, its `dreamtray` command and its start at login.
# Keeps the gallery, styles and config, unless --purge is given: then dreamtray's own folders go too (data,
# config, cache, and the gallery in its default place). A gallery folder you chose yourself is never removed,
# nor are models in the shared Hugging Face cache (other applications use them as well).
set -euo pipefail

purge=0
case "${1:-}" in
  "") ;;
  --purge) purge=1 ;;
  -h|--help) sed -n '2,10s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"; exit 0 ;;
  *) echo "uninstall.sh: unknown option '$1'; the only option is --purge" >&2; exit 1 ;;
esac

# dreamtray's own folders, where the platform puts them (the same places as dreamtray.paths).
case "$(uname -s)" in
  Linux)
    data_dir="${XDG_DATA_HOME:-$HOME/.local/share}/dreamtray"
    pictures=$(. "${XDG_CONFIG_HOME:-$HOME/.config}/user-dirs.dirs" 2>/dev/null; echo "${XDG_PICTURES_DIR:-$HOME/Pictures}")
    user_dirs=("$data_dir" "${XDG_CONFIG_HOME:-$HOME/.config}/dreamtray" "${XDG_CACHE_HOME:-$HOME/.cache}/dreamtray"
               "${XDG_STATE_HOME:-$HOME/.local/state}/dreamtray" "$pictures/dreamtray") ;;
  Darwin)
    data_dir="$HOME/Library/Application Support/dreamtray"
    user_dirs=("$data_dir" "$HOME/Library/Caches/dreamtray" "$HOME/Library/Logs/dreamtray" "$HOME/Pictures/dreamtray") ;;
  *) echo "uninstall.sh: this script is for Linux and macOS; on Windows run installer\\uninstall.ps1" >&2; exit 1 ;;
esac
venv="$data_dir/venv"
command_link="$HOME/.local/bin/dreamtray"

if "$venv/bin/python" -c 'import dreamtray.cli.setup' >/dev/null 2>&1; then
  "$venv/bin/python" -m dreamtray.cli.setup autostart off
  "$venv/bin/python" -m dreamtray.cli.setup launcher remove
else
  echo "dreamtray's environment ($venv) is missing or broken; removing its launcher files by their usual names"
  data_home="${XDG_DATA_HOME:-$HOME/.local/share}"
  rm -f "${XDG_CONFIG_HOME:-$HOME/.config}/autostart/dreamtray.desktop" "$data_home/applications/dreamtray.desktop" \
        "$data_home"/icons/hicolor/*/apps/dreamtray.png "$HOME/Library/LaunchAgents/org.dreamtray.dreamtray.plist"
  rm -rf "$HOME/Applications/dreamtray.app"
fi

if [ -L "$command_link" ] && [ "$(readlink "$command_link")" = "$venv/bin/dreamtray" ]; then
  rm -f "$command_link"
fi
rm -rf "$venv"
echo "removed dreamtray's environment: $venv"

if [ "$purge" = 1 ]; then
  for dir in "${user_dirs[@]}"; do
    if [ -e "$dir" ]; then rm -rf "$dir"; echo "removed: $dir"; fi
  done
else
  rmdir "$data_dir" 2>/dev/null || true  # only if nothing else was in it
  for dir in "${user_dirs[@]}"; do
    if [ -e "$dir" ]; then echo "kept: $dir"; fi
  done
  echo "(your gallery, styles and config stay; to remove them too: $0 --purge)"
fi
