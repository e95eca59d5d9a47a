#!/usr/bin/env bash
# Build the release the execution host installs, into dist/ (the files Pulumi.dev.yaml names): the wheel, the
# locked requirements with their hashes, and a static linux/amd64 opa at keyguard.tools.OPA_VERSION. The Pulumi
# program uploads each one and pins its sha256 in the host's boot script. Run before `pulumi preview` / `up`.
#
#   bash infra/release.sh                       # opa built from the Go module proxy, CGO off (static)
#   OPA_BINARY=opa_linux_amd64_static OPA_SHA256=<published sha256> bash infra/release.sh   # the release binary
set -euo pipefail
cd "$(dirname "$0")/.."

OPA_VERSION="$(uv run --frozen python -c 'from keyguard.tools import OPA_VERSION; print(OPA_VERSION)')"
mkdir -p dist
rm -f dist/keyguard-*.whl
uv build --wheel --out-dir dist --quiet
uv export --frozen --no-dev --no-emit-project --quiet --output-file dist/requirements.txt

# opa version's output is captured first: a pipe into grep -q can kill opa with SIGPIPE (see scripts/setup.sh).
opa_ok() { [ -x dist/opa ] && [[ $'\n'"$(dist/opa version 2>/dev/null)"$'\n' == *$'\n'"Version: $OPA_VERSION"$'\n'* ]]; }
if [ -n "${OPA_BINARY:-}" ]; then
  [ -n "${OPA_SHA256:-}" ] || { echo "release: OPA_BINARY needs OPA_SHA256 (the release's .sha256)" >&2; exit 1; }
  echo "$OPA_SHA256  $OPA_BINARY" | sha256sum --check --strict -
  install -m 0755 "$OPA_BINARY" dist/opa
elif ! opa_ok; then
  echo "release: building opa $OPA_VERSION (static) from the Go module proxy" >&2
  CGO_ENABLED=0 GOBIN="$PWD/dist" GOFLAGS=-mod=mod go install "github.com/open-policy-agent/opa@v$OPA_VERSION"
fi
opa_ok || { echo "release: dist/opa is not opa $OPA_VERSION" >&2; exit 1; }
sha256sum dist/keyguard-*.whl dist/requirements.txt dist/opa
