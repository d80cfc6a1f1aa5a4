#!/usr/bin/env bash
# Recipe of the `base` template: Debian 12 (bookworm) from Debian's packages.
# scripts/build-image.sh hashes this file; any change here rebuilds the image.
# Runs with $ROOTFS (empty target dir) and $MIRROR set by the builder.
set -euo pipefail

SUITE=bookworm
# libstdc++6 and libgcc-s1 are what the agent's bind-mounted Node.js (which runs envd) links against.
PACKAGES=bash,ca-certificates,curl,git,python3,python3-pip,python3-venv,procps,iproute2,less,sudo,libstdc++6,libgcc-s1,tini

debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$ROOTFS" "$MIRROR"

# The E2B SDK's default user: `user`, uid 1000, home /home/user (also the default workdir).
chroot "$ROOTFS" useradd --create-home --uid 1000 --shell /bin/bash user
echo 'user ALL=(ALL) NOPASSWD:ALL' >"$ROOTFS/etc/sudoers.d/user"
chmod 0440 "$ROOTFS/etc/sudoers.d/user"

# A login shell's /etc/profile asks `id -u` in a subshell for the uid: a fork and an exec of a
# dynamically linked program in every `bash -l`, which is how the e2b SDK runs each command. Under
# gVisor that was ~60 % of `bash -l -c true` (docs/performance.md, issue 13). bash knows the same
# number as $EUID; shells without it still ask `id`.
sed -i 's/"$(id -u)"/"${EUID:-$(id -u)}"/' "$ROOTFS/etc/profile"
grep -q '"${EUID:-$(id -u)}"' "$ROOTFS/etc/profile"

# Mount points the agent binds into every sandbox (envd and its runtime, read-only).
mkdir -p "$ROOTFS/opt/wrenn"

# Resolvers: gVisor's netstack forwards DNS like any other traffic; the agent overwrites this per sandbox.
echo 'nameserver 1.1.1.1' >"$ROOTFS/etc/resolv.conf"
echo 'wrenn' >"$ROOTFS/etc/hostname"

# Keep the image small: package caches and docs are not needed at run time.
chroot "$ROOTFS" apt-get clean
rm -rf "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/usr/share/doc/* "$ROOTFS"/usr/share/man/* "$ROOTFS"/var/cache/debconf/*-old
