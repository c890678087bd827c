# Sourced by qemu-versions.sh and aarch64-tests.sh: `debian_mirror` prints the Debian mirror
# this machine's apt uses for its own release (deb822 .sources or one-line sources.list),
# without a trailing slash, or nothing when there is none. The mirror is read at run time,
# never written into the repository.
debian_mirror() {
    local codename uri
    codename=$(. /etc/os-release && echo "$VERSION_CODENAME")
    uri=$(awk -v c="$codename" '
        /^URIs:/ { u = $2 }
        /^Suites:/ { for (i = 2; i <= NF; i++) if ($i == c) found = u }
        /^$/ { u = "" }
        END { if (found) print found }' /etc/apt/sources.list.d/*.sources 2>/dev/null || true)
    if [ -z "$uri" ] && [ -f /etc/apt/sources.list ]; then
        uri=$(awk -v c="$codename" '$1 == "deb" {
            for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) { u = $i; if ($(i+1) == c) { print u; exit } } }' \
            /etc/apt/sources.list)
    fi
    [ -n "$uri" ] && echo "${uri%/}"
    return 0
}
