#!/usr/bin/env bash
# build.sh - `make deb`: the Debian package of chcp, built with dpkg-deb from
# `make install` into a staging tree (no debian/ source package, no
# debhelper: one binary package, built the same way on any Debian 12).
#
#   build/deb/root/        the staging tree (DESTDIR)
#   build/chcp_<version>_<arch>.deb
#
# Depends: is computed by dpkg-shlibdeps from the binaries, so it names the
# exact libraries (and minimum versions) this build links. The maintainer
# scripts (packaging/deb/) create the user, the directories, and enable and
# start the unit where systemd runs.
set -euo pipefail
cd "$(dirname "$0")/../.."
# Called from make (make deb, make packaging-test): B=, SAN= of the caller
# must not reach the release build below.
unset MAKEFLAGS MFLAGS MAKELEVEL B SAN

B=build/deb
ROOT=$B/root
VERSION=${DEB_VERSION:-$(cat VERSION)}
ARCH=$(dpkg --print-architecture)
OUT=build/chcp_${VERSION}_${ARCH}.deb

for tool in dpkg-deb dpkg-shlibdeps; do
    command -v "$tool" >/dev/null || { echo "make deb: $tool missing (scripts/deps.sh installs it)" >&2; exit 1; }
done

rm -rf "$ROOT"
# A release build of its own (not the ASan tree), Debian's paths. Units go
# to /lib/systemd/system as bookworm's packages do.
make --no-print-directory B=$B SAN=0 build >/dev/null
make --no-print-directory B=$B SAN=0 install DESTDIR="$PWD/$ROOT" PREFIX=/usr \
    UNITDIR=/lib/systemd/system SYSUSERSDIR=/usr/lib/sysusers.d TMPFILESDIR=/usr/lib/tmpfiles.d \
    DOCDIR=/usr/share/doc/chcp MANDIR=/usr/share/man >/dev/null
# Debian policy: man pages compressed (gzip -9n: no name or time stamp).
find "$ROOT/usr/share/man" -type f -name '*.[0-9]' -exec gzip -9n {} +
# Debian wants the licence as /usr/share/doc/<package>/copyright.
install -m 0644 LICENSE "$ROOT/usr/share/doc/chcp/copyright"
# Debian ships stripped binaries (the ASan/debug builds are for developers).
bins=$(find "$PWD/$ROOT/usr/sbin" "$PWD/$ROOT/usr/bin" -type f 2>/dev/null | sort || true)
for f in $bins; do
    strip --strip-unneeded --remove-section=.comment --remove-section=.note "$f"
done

# dpkg-shlibdeps wants a debian/control to read; give it a minimal one.
shl=$(mktemp -d)
trap 'rm -rf "$shl"' EXIT
mkdir -p "$shl/debian"
printf 'Source: chcp\n\nPackage: chcp\nArchitecture: any\n' > "$shl/debian/control"
depends=$(cd "$shl" && dpkg-shlibdeps -O $bins 2>/dev/null | sed -n 's/^shlibs:Depends=//p')
[ -n "$depends" ] || { echo "make deb: dpkg-shlibdeps found no dependencies" >&2; exit 1; }

size=$(du -sk --apparent-size "$ROOT" | cut -f1)
mkdir -p "$ROOT/DEBIAN"
sed -e "s|@VERSION@|$VERSION|" -e "s|@ARCH@|$ARCH|" -e "s|@DEPENDS@|$depends|" \
    -e "s|@SIZE@|$size|" packaging/deb/control.in > "$ROOT/DEBIAN/control"
# Conffiles: everything under /etc (dpkg keeps the operator's edits).
(cd "$ROOT" && find etc -type f | sed 's|^|/|' | sort) > "$ROOT/DEBIAN/conffiles"
for s in postinst prerm postrm; do
    install -m 0755 "packaging/deb/$s" "$ROOT/DEBIAN/$s"
done
(cd "$ROOT" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | sort -z |
    xargs -0 md5sum) > "$ROOT/DEBIAN/md5sums"

# Files owned by root whoever builds (no fakeroot needed).
dpkg-deb --root-owner-group --build -Zxz "$ROOT" "$OUT" >/dev/null
echo "$OUT"
