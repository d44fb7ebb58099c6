# tools/ensure_packages.sh — sourced by the tools/ scripts: ensure_packages PKG... installs with apt-get the
# Debian packages dpkg does not report as installed (sudo when not root). The caller sets SCRIPT_NAME.
ensure_packages() {
  if ! command -v dpkg >/dev/null 2>&1; then
    echo "${SCRIPT_NAME}: no dpkg here; assuming these are installed: $*" >&2
    return 0
  fi
  local missing=() pkg
  for pkg in "$@"; do
    dpkg -s "$pkg" 2>/dev/null | grep -q '^Status: install ok installed' || missing+=("$pkg")
  done
  if [[ ${#missing[@]} -eq 0 ]]; then
    return 0
  fi
  local sudo=()
  if [[ $(id -u) -ne 0 ]]; then
    if ! command -v sudo >/dev/null 2>&1; then
      echo "${SCRIPT_NAME}: missing packages: ${missing[*]}; install them as root (apt-get install ${missing[*]})" >&2
      exit 1
    fi
    sudo=(sudo)
  fi
  echo "==> Installing ${missing[*]}"
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
}
