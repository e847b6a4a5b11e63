#!/usr/bin/env bash
# lint.sh - `make lint`: formatting, static analysis and the proto's lint.
# Generated code and fetched protos are not ours and are not linted.
set -uo pipefail
cd "$(dirname "$0")/.."
B=${B:-build}
rc=0
files=$(git ls-files '*.c' '*.h')

echo "== clang-format"
clang-format --dry-run --Werror $files || rc=1

echo "== cppcheck"
cppcheck --quiet --error-exitcode=1 --std=c11 --enable=warning,portability,performance \
    --inline-suppr --suppress=missingIncludeSystem -D__GNUC__ -Isrc \
    $(git ls-files 'src/*.c') || rc=1

echo "== clang-tidy"
flags="-std=gnu17 -D_GNU_SOURCE -Isrc -I$B/gen $(pkg-config --cflags libuv libnghttp2 libprotobuf-c jansson)"
clang-tidy --quiet $(git ls-files 'src/*.c') -- $flags || rc=1

echo "== buf lint"
.tools/node_modules/.bin/buf lint || rc=1

[ $rc -eq 0 ] && echo "lint: clean"
exit $rc
