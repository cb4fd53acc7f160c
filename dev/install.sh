#!/usr/bin/env bash
# Installs Carme's Python/npm side for development, tests and the demo under /opt/carme. Run as root
# on Debian 12; idempotent (a re-run takes seconds). Fails loudly.
#
#   dev/install.sh [--chromium] [REPO]
#
#   REPO         the project to install (default: the repository this script is in)
#   --chromium   also Debian's chromium and pip's playwright (browser tests; use
#                executable_path=/usr/bin/chromium, the Playwright CDN is not reachable here)
#
# What it puts in place:
#   /opt/carme/venv            a venv of the SYSTEM /usr/bin/python3 (jobs run as unprivileged users,
#                              so not a pyenv python under /root) with REPO[test] installed, not
#                              editable: dependencies only when pyproject.toml changed (its hash is
#                              in /opt/carme/.deps-hash), the project itself on every run
#   /opt/carme/node            configurable-http-proxy@5 from npm; /opt/carme/bin/configurable-http-proxy
#   /opt/carme/code-server     code-server from npm (its version pinned per node major), built here: native
#                              modules against Debian's node headers (libkrb5-dev), ripgrep from Debian's
#                              `ripgrep` (its npm wrapper would download a binary from GitHub);
#                              $VENV/bin/code-server links to it (the session's VS Code, carme_lab.apps)
#   /opt/carme/lab-builder     @jupyterlab/builder from npm: builds the Carme lab extension (carme_lab/js) into
#                              the venv's share/jupyter/labextensions/carme-lab
#   /opt/carme/standins        the STAND-IN apptainer and nvidia-smi from dev/standins (tests/demo only)
#   /opt/carme/images/*.sif    placeholder images for the stand-in apptainer (not real SIF files)
# Everything under /opt/carme is world-readable: the servers run as the users in their jobs.
set -Eeuo pipefail
umask 022
trap 'echo "install: FAILED (exit $?) at line $LINENO: $BASH_COMMAND" >&2' ERR

PREFIX=${CARME_PREFIX:-/opt/carme}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
VENV=$PREFIX/venv
PY=$VENV/bin/python
IMAGES=(python-cpu pytorch-gpu tensorflow-gpu jax-gpu rapids-gpu)
IMAGE_MARKER="# Carme STAND-IN image placeholder"
START=$SECONDS

log() { printf 'install: %s\n' "$*" >&2; }
die() { printf 'install: ERROR: %s\n' "$*" >&2; exit 1; }

chromium=0 repo=''
for arg in "$@"; do
    case $arg in
    --chromium) chromium=1 ;;
    -h | --help) sed -n '2,20p' "$0"; exit 0 ;;
    -*) die "unknown option $arg (see --help)" ;;
    *) [ -z "$repo" ] || die "only one REPO argument, got '$repo' and '$arg'"; repo=$arg ;;
    esac
done
repo=${repo:-$(dirname "$HERE")}
[ "$(id -u)" = 0 ] || die "run as root"
[ -d "$repo" ] || die "no such directory: $repo"
repo=$(cd "$repo" && pwd -P)
[ -f "$repo/pyproject.toml" ] || die "$repo/pyproject.toml is missing"

apt_updated=0
apt_install() {  # apt_install PACKAGE...: install those not installed yet
    local missing=() pkg
    for pkg in "$@"; do dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg"); done
    [ ${#missing[@]} -gt 0 ] || return 0
    if [ "$apt_updated" = 0 ]; then apt-get update -qq; apt_updated=1; fi
    log "apt-get install ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# --- Debian packages -----------------------------------------------------------------------------
apt_install python3-venv bubblewrap curl openssh-client openssh-sftp-server  # ssh/sftp: carme-ssh (sftp-server in the jobs) and its tests
command -v node >/dev/null || apt_install nodejs npm
[ "$chromium" = 0 ] || apt_install chromium libnss3-tools  # certutil: the HTTPS browser test trusts its test CA in an NSS db
{ command -v node && command -v npm; } >/dev/null || die "node/npm not found after installing nodejs npm"
/usr/bin/python3 -c 'import sys; sys.exit(sys.version_info < (3, 10))' || die "/usr/bin/python3 is older than 3.10"

# --- the venv ------------------------------------------------------------------------------------
mkdir -p "$PREFIX" "$PREFIX/bin"
if [ ! -x "$PY" ]; then
    log "creating $VENV from /usr/bin/python3"
    /usr/bin/python3 -m venv "$VENV"
    rm -f "$PREFIX/.deps-hash"
fi
pip() { "$PY" -m pip --disable-pip-version-check --no-input -q "$@"; }

# pip builds in the source tree (egg-info, build/): build from a copy so the repo stays untouched
# (it may be read-only, or shared with other work).
src=$(mktemp -d /tmp/carme-install.XXXXXX)
trap 'rm -rf "$src"' EXIT
tar -C "$repo" --exclude=.git --exclude=node_modules --exclude='*.egg-info' --exclude=build \
    --exclude=.venv --exclude=__pycache__ --exclude=.pytest_cache --exclude=.hypothesis -cf - . | tar -C "$src" -xf -

deps_hash=$(sha256sum "$repo/pyproject.toml" | cut -d' ' -f1)
if [ "$(cat "$PREFIX/.deps-hash" 2>/dev/null || true)" != "$deps_hash" ]; then
    log "pyproject.toml changed (or first run): installing ${repo}[test] with its dependencies"
    pip install --upgrade pip
    pip install "${src}[test]"
    echo "$deps_hash" >"$PREFIX/.deps-hash"
    deps_state="dependencies installed"
else
    deps_state="dependencies unchanged (pyproject.toml hash $(cut -c1-12 <<<"$deps_hash"))"
fi
log "installing the project itself from $repo"
pip install --no-deps --force-reinstall "$src"
[ "$chromium" = 0 ] || pip install playwright

# --- configurable-http-proxy ---------------------------------------------------------------------
chp=$PREFIX/node/node_modules/.bin/configurable-http-proxy
if [ ! -x "$chp" ]; then
    log "npm install configurable-http-proxy@5 into $PREFIX/node"
    npm install --prefix "$PREFIX/node" --no-audit --no-fund --loglevel=error configurable-http-proxy@5 >/dev/null
    [ -x "$chp" ] || die "npm did not install $chp"
fi
ln -sfn "$chp" "$PREFIX/bin/configurable-http-proxy"

# --- code-server (the session's web IDE, started by jupyter-server-proxy on a unix socket) -----------------
# From the npm registry only: its postinstall builds VS Code's native modules here (node-gyp against
# /usr/include/node, no header download), and @vscode/ripgrep, which would fetch rg from GitHub, finds
# Debian's rg in its download cache (a private TMPDIR). Versions whose `engines` accept this node:
node_major=$(node -p 'process.versions.node.split(".")[0]')
case $node_major in
20) code_server_version=4.100.3 ;;  # engines node 20 (verified on Debian 12 with node 20)
18) code_server_version=4.89.1 ;;   # engines node 18
22) code_server_version=4.103.2 ;;  # engines node 22
*) die "no code-server version known for node $node_major (pin one whose engines accept it)" ;;
esac
code_server=$PREFIX/code-server/node_modules/.bin/code-server
if [ ! -x "$code_server" ] || [ "$(cat "$PREFIX/.code-server-version" 2>/dev/null || true)" != "$code_server_version" ]; then
    apt_install g++ make libkrb5-dev ripgrep
    log "npm install code-server@$code_server_version into $PREFIX/code-server (builds native modules, ~2 min)"
    rg_cache=$(mktemp -d /tmp/carme-code-server.XXXXXX)
    # @vscode/ripgrep 1.15.11 (code-server 4.100.x) looks in $TMPDIR/vscode-ripgrep-cache-1.15.11/ for
    # ripgrep-v13.0.0-10-<target>.tar.gz before it asks GitHub; Debian's rg is 13.0.0 too
    mkdir -p "$rg_cache/rg" "$rg_cache/vscode-ripgrep-cache-1.15.11"
    cp /usr/bin/rg "$rg_cache/rg/rg"
    tar -C "$rg_cache/rg" -czf "$rg_cache/vscode-ripgrep-cache-1.15.11/ripgrep-v13.0.0-10-x86_64-unknown-linux-musl.tar.gz" rg
    rm -rf "$PREFIX/code-server"
    mkdir -p "$PREFIX/code-server"
    if ! TMPDIR=$rg_cache npm_config_yes=true npm install --prefix "$PREFIX/code-server" --no-audit --no-fund \
            --loglevel=error --unsafe-perm "code-server@$code_server_version" >"$rg_cache/npm.log" 2>&1; then
        tail -40 "$rg_cache/npm.log" >&2
        die "npm could not install code-server@$code_server_version"
    fi
    rm -rf "$rg_cache"
    [ -x "$code_server" ] || die "npm did not install $code_server"
    echo "$code_server_version" >"$PREFIX/.code-server-version"
fi
ln -sfn "$code_server" "$VENV/bin/code-server"

# --- stand-ins and placeholder images ------------------------------------------------------------
mkdir -p "$PREFIX/standins" "$PREFIX/images"
for f in "$HERE"/standins/*; do install -m 0755 "$f" "$PREFIX/standins/"; done
for name in "${IMAGES[@]}"; do
    image=$PREFIX/images/$name.sif
    # write when missing; refresh our own placeholders, never overwrite anything else (a real image)
    if [ ! -e "$image" ] || head -n1 "$image" | grep -qxF "$IMAGE_MARKER: $name"; then
        cat >"$image.new" <<EOF
$IMAGE_MARKER: $name
# Not a real SIF image. The STAND-IN apptainer ($PREFIX/standins/apptainer, tests and demo only)
# accepts this file as an image and runs the HOST root filesystem instead. It reads only the
# "export NAME=VALUE" lines below, as the image's %environment (literal values, no expansion).
export PATH=$VENV/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export CARME_STANDIN_IMAGE=$name
EOF
        chmod 0644 "$image.new"
        mv -f "$image.new" "$image"
    fi
done

# --- the single-user environment's site defaults (compute nodes have no internet) -------------------
# JupyterLab asks no "notified about official Jupyter news?", checks for no updates and shows no
# extension manager (settings overrides, as a site sets them), and the server fetches no news
install -D -m 0644 "$HERE/singleuser/overrides.json" "$VENV/share/jupyter/lab/settings/overrides.json"
install -D -m 0644 "$HERE/singleuser/carme-offline.json" "$VENV/etc/jupyter/jupyter_server_config.d/carme-offline.json"

# --- the Carme lab extension: a prebuilt JupyterLab 4 extension and its server part (carme_lab) -------
# Built with @jupyterlab/builder (from npm, once) against this venv's JupyterLab; rebuilt only when
# its sources or JupyterLab change. The server part (carme_lab.relay) is enabled for every server.
builder=$PREFIX/lab-builder/node_modules/@jupyterlab/builder/lib/build-labextension.js
if [ ! -f "$builder" ]; then
    log "npm install @jupyterlab/builder@^4.2 into $PREFIX/lab-builder"
    npm install --prefix "$PREFIX/lab-builder" --no-audit --no-fund --loglevel=error '@jupyterlab/builder@^4.2.0' >/dev/null
    [ -f "$builder" ] || die "npm did not install $builder"
fi
lab_dest=$VENV/share/jupyter/labextensions/carme-lab
lab_core=$("$PY" -c 'import jupyterlab, os; print(os.path.join(os.path.dirname(jupyterlab.__file__), "staging"))')
lab_hash=$( (cd "$repo/carme_lab/js" && cat package.json src/*.js style/*.css; cat "$lab_core/package.json") | sha256sum | cut -d' ' -f1)
if [ "$(cat "$PREFIX/.lab-hash" 2>/dev/null || true)" != "$lab_hash" ] || [ ! -f "$lab_dest/package.json" ]; then
    log "building the Carme lab extension into $lab_dest"
    rm -rf "$src/carme_lab/js/labextension"
    node "$builder" --core-path "$lab_core" "$src/carme_lab/js" >"$src/lab-build.log" 2>&1 \
        || { tail -30 "$src/lab-build.log" >&2; die "the Carme lab extension did not build"; }
    rm -rf "$lab_dest"
    mkdir -p "$(dirname "$lab_dest")"
    cp -r "$src/carme_lab/js/labextension" "$lab_dest"
    echo "$lab_hash" >"$PREFIX/.lab-hash"
fi
install -D -m 0644 "$HERE/singleuser/carme-lab.json" "$VENV/etc/jupyter/jupyter_server_config.d/carme-lab.json"

# --- permissions ---------------------------------------------------------------------------------
chmod -R a+rX "$PREFIX"
find "$PREFIX" -type d -exec chmod 0755 {} +

# --- summary -------------------------------------------------------------------------------------
versions=$("$PY" - <<'EOF'
from importlib.metadata import version, PackageNotFoundError
for name in ("carme", "jupyterhub", "jupyterlab", "batchspawner", "jupyter-server-proxy", "tensorboard"):
    try:
        print(f"  {name:24} {version(name)}")
    except PackageNotFoundError:
        print(f"  {name:24} NOT INSTALLED")
EOF
)
cat <<EOF
install: done in $((SECONDS - START)) s ($deps_state)
  venv                     $VENV (python $("$PY" -c 'import platform; print(platform.python_version())'), from /usr/bin/python3)
$versions
  configurable-http-proxy  $("$PREFIX/bin/configurable-http-proxy" --version) ($PREFIX/bin/configurable-http-proxy, node $(node --version))
  code-server              $(cat "$PREFIX/.code-server-version") ($VENV/bin/code-server)
  stand-ins                $(cd "$PREFIX/standins" && echo *) in $PREFIX/standins (STAND-INS: tests and demo only)
  images                   $(cd "$PREFIX/images" && echo *) in $PREFIX/images (placeholders for the stand-in)
EOF
[ "$chromium" = 0 ] || echo "  chromium                 $(chromium --version 2>/dev/null || echo '?'), playwright $("$PY" -m playwright --version 2>/dev/null || echo '?')"
for name in jupyterhub jupyterlab batchspawner; do
    grep -q "^  $name .*NOT INSTALLED" <<<"$versions" && die "$name is not installed in $VENV"
done
exit 0
