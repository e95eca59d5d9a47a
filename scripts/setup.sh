#!/usr/bin/env bash
# Installs everything Keyguard needs on a fresh machine, idempotently: uv, the locked Python environment,
# the pinned opa binary (project-local), the gateway's fast lane, and PostgreSQL's server binaries for the
# production-store tests.
set -euo pipefail
cd "$(dirname "$0")/.."

OPA_VERSION="1.22.2"
REGAL_VERSION="0.29.2"
ACTIONLINT_VERSION="1.7.12"
# sha256 of the official linux/amd64 static release, used only where Go is absent.
OPA_SHA256_LINUX_AMD64="${OPA_SHA256_LINUX_AMD64:-}"
TOOLS="$PWD/.tools/bin"
mkdir -p "$TOOLS"
export PATH="$TOOLS:$HOME/.local/bin:$PATH"

say() { printf '\033[1m[setup]\033[0m %s\n' "$*"; }

if ! command -v uv >/dev/null 2>&1; then
  say "installing uv from PyPI"
  python3 -m pip install --quiet --disable-pip-version-check uv 2>/dev/null \
    || python3 -m pip install --quiet --disable-pip-version-check --user uv
fi

say "syncing the locked Python environment"
uv sync --frozen --quiet

# The output is captured first: `opa version | grep -q` under pipefail fails whenever grep exits before opa has
# written everything (opa then dies of SIGPIPE), which made a fresh build look like the wrong version.
opa_ok() { [ -x "$TOOLS/opa" ] && [[ $'\n'"$("$TOOLS/opa" version 2>/dev/null)"$'\n' == *$'\n'"Version: $OPA_VERSION"$'\n'* ]]; }
if ! opa_ok; then
  if command -v go >/dev/null 2>&1; then
    say "building opa $OPA_VERSION from the Go module proxy (about a minute)"
    GOBIN="$TOOLS" GOFLAGS=-mod=mod go install "github.com/open-policy-agent/opa@v$OPA_VERSION"
  elif [ -n "$OPA_SHA256_LINUX_AMD64" ]; then
    say "downloading the opa $OPA_VERSION release binary"
    curl -fsSL -o "$TOOLS/opa.tmp" \
      "https://openpolicyagent.org/downloads/v$OPA_VERSION/opa_linux_amd64_static"
    echo "$OPA_SHA256_LINUX_AMD64  $TOOLS/opa.tmp" | sha256sum -c -
    chmod +x "$TOOLS/opa.tmp" && mv "$TOOLS/opa.tmp" "$TOOLS/opa"
  else
    echo "setup: need Go (to build opa $OPA_VERSION) or OPA_SHA256_LINUX_AMD64 for the release binary" >&2
    exit 1
  fi
fi
opa_ok || { echo "setup: opa at $TOOLS/opa is not version $OPA_VERSION" >&2; exit 1; }

# Regal (the Rego linter) from the Go module proxy. `go install regal@v` is refused by the proxy's version
# listing here, so the pinned module is downloaded and built directly.
if command -v go >/dev/null 2>&1 && [ "$(cat "$TOOLS/regal.version" 2>/dev/null)" != "$REGAL_VERSION" ]; then
  say "building regal $REGAL_VERSION from the Go module proxy"
  dir=$(go mod download -json "github.com/styrainc/regal@v$REGAL_VERSION" | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')
  (cd "$dir" && GOFLAGS=-mod=mod go build -o "$TOOLS/regal" .)
  echo "$REGAL_VERSION" > "$TOOLS/regal.version"
fi

# actionlint (the GitHub workflow linter tests/gate runs) from the Go module proxy; the version it reports is
# checked, like opa's. Without Go it is not built and the workflow lint test fails, naming this script.
actionlint_ok() {
  [ -x "$TOOLS/actionlint" ] && [[ $'\n'"$("$TOOLS/actionlint" -version 2>/dev/null)"$'\n' == *$'\n'"v$ACTIONLINT_VERSION"$'\n'* ]]
}
if ! actionlint_ok; then
  if command -v go >/dev/null 2>&1; then
    say "building actionlint $ACTIONLINT_VERSION from the Go module proxy"
    GOBIN="$TOOLS" GOFLAGS=-mod=mod go install "github.com/rhysd/actionlint/cmd/actionlint@v$ACTIONLINT_VERSION"
    actionlint_ok || { echo "setup: actionlint at $TOOLS/actionlint is not version $ACTIONLINT_VERSION" >&2; exit 1; }
  else
    say "Go not found: actionlint $ACTIONLINT_VERSION not built (the workflow lint test will fail)" >&2
  fi
fi

# The gateway's fast lane (lane/, standard library only; docs/lane.md), rebuilt from the checkout's sources every run:
# Go's build cache makes an unchanged one a moment's work. Without Go the gateway serves every order itself.
if command -v go >/dev/null 2>&1; then
  say "building the gateway's fast lane"
  (cd lane && GOFLAGS=-mod=mod go build -trimpath -o "$TOOLS/keyguard-lane" .)
else
  rm -f "$TOOLS/keyguard-lane"
  say "Go not found: the gateway's fast lane is not built (the gateway serves every order itself)" >&2
fi

pg_bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1; }
if [ "${KEYGUARD_SKIP_POSTGRES:-0}" != "1" ] && [ -z "$(pg_bin)" ]; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    say "installing PostgreSQL server from Debian's packages"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
  else
    say "PostgreSQL server binaries not found and cannot install them (not root): the PostgreSQL tests will fail"
  fi
fi
# Debian's Chromium for the dashboard's browser tests (Playwright drives it; it never downloads a browser).
if [ "${KEYGUARD_SKIP_BROWSER:-0}" != "1" ] && ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    say "installing Chromium from Debian's packages"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    say "Chromium not found and cannot install it (not root): the browser tests will fail"
  fi
fi
say "ready: opa $OPA_VERSION at $TOOLS/opa"
