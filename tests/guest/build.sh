#!/usr/bin/env bash
# build.sh - build the test guests from Debian packages (nothing is committed):
#
#   OUT/vmlinux      the distribution kernel as an uncompressed ELF (PVH entry),
#                    what QEMU's microvm machine boots fastest
#   OUT/bzImage      the same kernel as shipped (for q35/pc)
#   OUT/initrd.img   a newc cpio: busybox-static, the kernel modules the guest
#                    needs, and tests/guest/init (read its header for what the
#                    guest does)
#   OUT/tiny.elf     a bare multiboot guest (tiny.S) for KVM paths
#   OUT/guest.env    KERNEL_VERSION=... BUSYBOX_VERSION=...
#
# usage: tests/guest/build.sh [OUT] [CACHE]   (defaults build/guest, build/cache/guest-debs)
#
# Packages are fetched with `apt-get download` into CACHE (kept between runs;
# a new Debian version of a package is fetched once) and unpacked with
# `dpkg -x`: nothing is installed and no root is needed. The kernel flavour is
# linux-image-cloud-amd64 (virtio, ACPI, small), overridable with
# GUEST_KERNEL_PKG=linux-image-amd64. Once the packages are cached a build
# takes a few seconds.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
OUT=${1:-build/guest}
CACHE=${2:-build/cache/guest-debs}
KERNEL_META=${GUEST_KERNEL_PKG:-linux-image-cloud-amd64}
# What the init loads, by name (virtio and virtio_ring come as dependencies).
MODULES="virtio_mmio virtio_pci virtio_blk virtio_net button evdev pvpanic_mmio pvpanic_pci
vfat isofs nls_cp437 nls_ascii nls_iso8859-1 nls_utf8"

die() { echo "build.sh: $*" >&2; exit 1; }
mkdir -p "$OUT" "$CACHE"
OUT=$(cd "$OUT" && pwd)
CACHE=$(cd "$CACHE" && pwd)

# The meta package names the versioned kernel package it depends on.
resolve_kernel() { apt-cache depends "$KERNEL_META" 2>/dev/null | sed -n 's/^ *Depends: \(linux-image-[0-9].*\)$/\1/p' | head -n 1; }
kpkg=$(resolve_kernel)
if [ -z "$kpkg" ]; then
    apt-get update -qq >/dev/null 2>&1 || true # a fresh machine may have no package lists yet
    kpkg=$(resolve_kernel)
fi
[ -n "$kpkg" ] || die "cannot resolve $KERNEL_META to a kernel package (apt-cache depends)"

# Candidate versions of both packages in one apt-cache call (each call costs
# about a second: it loads the whole package cache).
policy=$(apt-cache policy "$kpkg" busybox-static)
candidate() { echo "$policy" | awk -v p="$1:" '$1 == p { f = 1 } f && $1 == "Candidate:" { print $2; exit }'; }

# fetch PKG -> path of the cached .deb of its candidate version
fetch() {
    local pkg=$1 ver deb
    ver=$(candidate "$pkg")
    [ -n "$ver" ] && [ "$ver" != "(none)" ] || die "no candidate version for $pkg"
    deb="$CACHE/${pkg}_$(echo "$ver" | sed 's/:/%3a/g')_amd64.deb"
    if [ ! -f "$deb" ]; then
        # (as root apt warns that it downloads unsandboxed: only say it on failure)
        (cd "$CACHE" && apt-get download -q "$pkg=$ver" >"$CACHE/download.log" 2>&1) ||
            { cat "$CACHE/download.log" >&2; die "apt-get download $pkg=$ver failed"; }
        [ -f "$deb" ] || die "apt-get download $pkg=$ver did not leave $deb"
    fi
    echo "$deb"
}
kdeb=$(fetch "$kpkg")
bdeb=$(fetch busybox-static)

work=$(mktemp -d "$OUT/.work.XXXXXX")
trap 'rm -rf "$work"' EXIT

# ---- kernel ------------------------------------------------------------------
# Unpacking the kernel package (an xz data.tar of ~100 MB) is the slow part, so
# what is needed of it is kept per kernel version next to the cached .debs:
# the bzImage, the extracted ELF and the modules with a modules.dep.
kver=${kpkg#linux-image-}
kdir="$CACHE/unpacked/$kver"
extract_vmlinux() {
    # Find the compressed payload by its magic and unpack it (what the
    # kernel's scripts/extract-vmlinux does). Debian 12 uses LZ4 (legacy
    # frame); the others are tried in case another flavour differs.
    local img=$1 out=$2 magic tool off
    for spec in '02214c18:lz4 -dcq' '1f8b0800:gzip -dcq' 'fd377a585a00:xz -dcq' '28b52ffd:zstd -dcq'; do
        magic=${spec%%:*}
        tool=${spec#*:}
        command -v "${tool%% *}" >/dev/null || continue
        for off in $(LC_ALL=C grep -obUaP "$(echo "$magic" | sed 's/../\\x&/g')" "$img" | cut -d: -f1 | head -n 5); do
            tail -c +$((off + 1)) "$img" | $tool > "$out" 2>/dev/null || true
            if [ "$(head -c 4 "$out" | od -An -tx1 | tr -d ' \n')" = 7f454c46 ]; then
                return 0
            fi
        done
    done
    return 1
}
if [ ! -f "$kdir/.complete" ]; then
    rm -rf "$kdir" && mkdir -p "$kdir"
    dpkg-deb --fsys-tarfile "$kdeb" | tar -x -C "$kdir" --wildcards \
        "./boot/vmlinuz-$kver" "./lib/modules/$kver/kernel/*" "./lib/modules/$kver/modules.*"
    [ -f "$kdir/boot/vmlinuz-$kver" ] || die "$kdeb has no boot/vmlinuz-$kver"
    extract_vmlinux "$kdir/boot/vmlinuz-$kver" "$kdir/vmlinux" ||
        die "cannot extract an ELF vmlinux from vmlinuz-$kver (is lz4 installed?)"
    bdeb_tmp=$(mktemp -d "$work/bb.XXXXXX")
    dpkg-deb --fsys-tarfile "$bdeb" | tar -x -C "$bdeb_tmp" ./bin/busybox
    # busybox depmod resolves dependencies from the modules' own .modinfo.
    "$bdeb_tmp/bin/busybox" depmod -b "$kdir" "$kver" 2>/dev/null || die "depmod failed"
    touch "$kdir/.complete"
fi
cp "$kdir/boot/vmlinuz-$kver" "$OUT/bzImage.tmp" && mv "$OUT/bzImage.tmp" "$OUT/bzImage"
cp "$kdir/vmlinux" "$OUT/vmlinux.tmp" && mv "$OUT/vmlinux.tmp" "$OUT/vmlinux"

# ---- initramfs -----------------------------------------------------------------
root="$work/root"
mkdir -p "$root"/{bin,dev,proc,sys,tmp,etc,seed,lib/modules/"$kver"}
dpkg-deb --fsys-tarfile "$bdeb" | tar -x -C "$work" ./bin/busybox
install -m 0755 "$work/bin/busybox" "$root/bin/busybox"
ln -s busybox "$root/bin/sh"
install -m 0755 "$here/init" "$root/init"
bb="$root/bin/busybox"
mdir="$kdir/lib/modules/$kver"
# Closure of the wanted modules, dependencies first (modules.dep lists a
# module's direct and indirect dependencies in load order, reversed).
order=$(
    for m in $MODULES; do
        re=$(echo "$m" | sed 's/[-_]/[-_]/g')
        line=$(grep -E "(^|/)$re\.ko:" "$mdir/modules.dep" | head -n 1)
        [ -n "$line" ] || die "module $m not in $kpkg"
        deps=${line#*:}
        for d in $(echo $deps | tr ' ' '\n' | tac); do echo "$d"; done
        echo "${line%%:*}"
    done | awk '!seen[$0]++'
)
echo "$order" > "$root/lib/modules/$kver/load.order"
for f in $order; do
    mkdir -p "$root/lib/modules/$kver/$(dirname "$f")"
    cp "$mdir/$f" "$root/lib/modules/$kver/$f"
done
# newc, owned by root, with busybox's own cpio (no host cpio needed).
(cd "$root" && find . | LC_ALL=C sort | "$bb" cpio -o -H newc -R 0:0 2>/dev/null) > "$OUT/initrd.img.tmp"
mv "$OUT/initrd.img.tmp" "$OUT/initrd.img"

# ---- the tiny guest --------------------------------------------------------------
as --32 -o "$work/tiny.o" "$here/tiny.S"
ld -m elf_i386 -T "$here/tiny.ld" -o "$OUT/tiny.elf" "$work/tiny.o"

bver=$(dpkg-deb -f "$bdeb" Version)
printf 'KERNEL_VERSION=%s\nKERNEL_PACKAGE=%s\nBUSYBOX_VERSION=%s\n' "$kver" "$kpkg" "$bver" > "$OUT/guest.env"
echo "build.sh: $OUT: kernel $kver, busybox $bver, initrd $(($(stat -c %s "$OUT/initrd.img") / 1024)) KiB"
