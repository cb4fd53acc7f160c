# Sourced by the dev scripts (ldap.sh, postgres.sh): install Debian packages that are missing,
# quietly, without recommends, using the caller's log(). Idempotent: nothing to do, no apt call.
#   install_debian_packages PKG...
install_debian_packages() {
    local missing=() pkg
    for pkg in "$@"; do
        dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
    done
    [ ${#missing[@]} -gt 0 ] || return 0
    log "installing ${missing[*]} from Debian"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}
