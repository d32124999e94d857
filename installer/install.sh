#!/usr/bin/env bash
# Install or upgrade dreamtray for this user, on Linux or macOS.
#
#   installer/install.sh [--cpu | --cuda] [--spec SPEC] [--python PYTHON] [--no-launcher]
#
#   --cpu, --cuda    force the torch build (default: chosen for the machine; or DREAMTRAY_TORCH=cpu|cuda|mps)
#   --spec SPEC      what pip installs as dreamtray (default: the source tree this script sits in)
#   --python PYTHON  the Python 3.10+ to build dreamtray's environment on (default: found on this system)
#   --no-launcher    leave the desktop's application menu alone
#
# dreamtray gets its own virtual environment in the user's data folder (venv/). Running this again upgrades
# that environment in place; the gallery, styles and config beside it are never touched.
set -euo pipefail

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
spec=$(dirname "$script_dir")
python=""
launcher=1
torch_args=()

die() { echo "install.sh: $*" >&2; exit 1; }

while [ $# -gt 0 ]; do
  case "$1" in
    --cpu|--cuda) torch_args+=("$1") ;;
    --spec) [ $# -ge 2 ] || die "--spec needs a value"; spec=$2; shift ;;
    --python) [ $# -ge 2 ] || die "--python needs a value"; python=$2; shift ;;
    --no-launcher) launcher=0 ;;
    -h|--help) sed -n '2,12s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"; exit 0 ;;
    *) die "unknown option '$1'; see --help" ;;
  esac
  shift
done

system=$(uname -s)
case "$system" in
  Linux) data_dir="${XDG_DATA_HOME:-$HOME/.local/share}/dreamtray" ;;
  Darwin) data_dir="$HOME/Library/Application Support/dreamtray" ;;
  *) die "this script is for Linux and macOS; on Windows run installer\\install.ps1 in PowerShell" ;;
esac
venv="$data_dir/venv"
command_link="$HOME/.local/bin/dreamtray"

usable() { "$1" -c 'import sys, venv; sys.exit(sys.version_info < (3, 10))' >/dev/null 2>&1; }
has_gi() { "$1" -c 'import gi' >/dev/null 2>&1; }

if [ -z "$python" ]; then
  # On Linux the tray's menu needs PyGObject, which the system's own Python usually has (python3-gi).
  for candidate in /usr/bin/python3 python3 python3.13 python3.12 python3.11 python3.10; do
    if usable "$candidate" && { [ "$system" != Linux ] || has_gi "$candidate"; }; then python=$candidate; break; fi
  done
  if [ -z "$python" ]; then
    for candidate in python3 python3.13 python3.12 python3.11 python3.10; do
      if usable "$candidate"; then python=$candidate; break; fi
    done
  fi
  [ -n "$python" ] || die "dreamtray needs Python 3.10 or newer; install it (Debian/Ubuntu: sudo apt install python3 python3-venv; macOS: python.org or Homebrew) and run this again"
elif ! usable "$python"; then
  die "$python is not a Python 3.10 or newer with the venv module"
fi
venv_args=()
if [ "$system" = Linux ] && has_gi "$python"; then
  venv_args+=(--system-site-packages)  # lets the environment see the system's PyGObject
fi

if "$venv/bin/python" -c 'import sys' >/dev/null 2>&1; then
  action=upgraded
  echo "== upgrading dreamtray's environment in place: $venv"
else
  action=installed
  if [ -e "$venv" ]; then
    echo "== the environment in $venv does not start; making it anew (your data beside it stays)"
    rm -rf "$venv"
  fi
  echo "== creating dreamtray's environment: $venv (Python: $python ${venv_args[*]+${venv_args[*]}})"
  mkdir -p "$data_dir"
  "$python" -m venv ${venv_args[@]+"${venv_args[@]}"} "$venv" ||
    die "could not create the environment; on Debian/Ubuntu: sudo apt install python3-venv, then run this again"
fi

echo "== torch"
"$venv/bin/python" "$script_dir/pick_torch.py" ${torch_args[@]+"${torch_args[@]}"} ||
  die "torch could not be installed (see above); nothing else was changed"

echo "== dreamtray ($spec)"
# --upgrade upgrades dreamtray; its dependencies only where needed, so the torch build just chosen stays.
"$venv/bin/python" -m pip install --upgrade "$spec" || die "dreamtray could not be installed (see above)"

setup() { "$venv/bin/python" -m dreamtray.cli.setup "$@"; }

if [ "$launcher" = 1 ]; then
  echo "== launcher"
  setup launcher install
fi

mkdir -p "$(dirname "$command_link")"
if [ ! -e "$command_link" ] && [ ! -L "$command_link" ] || [ "$(readlink "$command_link")" = "$venv/bin/dreamtray" ]; then
  ln -sfn "$venv/bin/dreamtray" "$command_link"
  command_note=$command_link
else
  command_note="$venv/bin/dreamtray ($command_link belongs to something else and was left alone)"
fi
case ":$PATH:" in
  *":$HOME/.local/bin:"*) ;;
  *) command_note="$command_note; add ~/.local/bin to your PATH to type just 'dreamtray'" ;;
esac

echo "== what the desktop needs"
setup desktop-check

versions=$("$venv/bin/python" -c 'from importlib.metadata import version; print(version("dreamtray"), version("torch"))')
cat <<EOF

dreamtray ${versions% *} $action, with torch ${versions#* }.
  environment:    $venv
  command:        $command_note
  start it:       dreamtray run   (or from the application menu)
  start at login: dreamtray autostart on   (or from the tray menu)
  uninstall:      $script_dir/uninstall.sh   (keeps your gallery, styles and config)
EOF
