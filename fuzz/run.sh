#!/usr/bin/env bash
# Fuzzes the claim checker (`kaigo_relay::claim::check` and `completeness`) for SECONDS seconds
# (default 60) on the stable toolchain. See fuzz/README.md.
#
#   fuzz/run.sh [SECONDS] [extra libFuzzer flags, e.g. -jobs=2 -workers=2]
#
# The fuzzer runs without a sanitizer (`--sanitizer none`): that needs no nightly flags, runs
# about 4x faster than AddressSanitizer and keeps memory flat, and the crate forbids unsafe code.
# FUZZ_SANITIZER=address fuzzes under AddressSanitizer instead, which needs `-Zsanitizer` and so
# RUSTC_BOOTSTRAP=1 on a stable toolchain (set here); it uses the same target dir, so switching
# rebuilds everything.
#
# New interesting inputs go to fuzz/corpus/claim_check/ (ignored by git, only the seed *.csv/*.bin
# are tracked); a crashing input is written to fuzz/artifacts/claim_check/ and the exit status is
# non-zero.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-60}
case $seconds in
  '' | *[!0-9]* | 0)
    echo "usage: $0 [SECONDS] [libFuzzer flags...]   (SECONDS: a positive whole number)" >&2
    exit 2
    ;;
esac
shift $(($# > 0 ? 1 : 0))

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "cargo-fuzz is not installed: run  cargo install cargo-fuzz --locked" >&2
  exit 1
fi

sanitizer=${FUZZ_SANITIZER:-none}
if [ "$sanitizer" != none ]; then
  export RUSTC_BOOTSTRAP=1
fi
exec cargo fuzz run --sanitizer "$sanitizer" claim_check -- -max_total_time="$seconds" "$@"
