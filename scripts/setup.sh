#!/usr/bin/env bash
# Idempotent developer / CI machine setup for the cpe workspace (Debian 12).
#
#   bash scripts/setup.sh            # everything
#   bash scripts/setup.sh --no-fuzz  # skip nightly + cargo-fuzz (used by the demo)
#
# Each step prints one line; a step with nothing to do says "already present".
# Safe with CI=true and no stdin: apt runs with DEBIAN_FRONTEND=noninteractive
# and every installer reads from /dev/null.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

WANT_FUZZ=1
for arg in "$@"; do
    case "$arg" in
        --no-fuzz) WANT_FUZZ=0 ;;
        -h | --help)
            sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'
            exit 0
            ;;
        *)
            echo "setup.sh: unknown option: $arg (known: --no-fuzz)" >&2
            exit 2
            ;;
    esac
done

export DEBIAN_FRONTEND=noninteractive
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"

step() { printf '[setup] %-34s %s\n' "$1" "$2"; }
die() {
    printf '[setup] ERROR: %s\n' "$*" >&2
    exit 1
}

# Run as root directly, otherwise through sudo (non-interactive).
SUDO=()
if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 || die "not root and sudo is not available"
    SUDO=(sudo -n)
fi

# ---------------------------------------------------------------------------
# 1. Debian packages
# ---------------------------------------------------------------------------
# libc6-dev-arm64-cross is only a Recommends of gcc-aarch64-linux-gnu; ring's C
# code needs its headers, so it is listed explicitly. file/curl/ca-certificates
# are used by cross/build.sh and the rustup bootstrap; the firmware image
# (images/) needs cpio, e2fsprogs, qemu-system-arm and, for its lint, shellcheck.
# The notice page's browser test (tests/tests/orders_netns.rs) needs Debian's
# chromium and the Japanese fonts (fonts-noto-cjk: without them Chromium draws
# tofu for the Japanese half).
# prometheus brings promtool, which checks the carrier's /metrics exposition
# (provisioning/tests/console.rs).
APT_PACKAGES=(
    build-essential pkg-config
    gcc-aarch64-linux-gnu libc6-dev-arm64-cross
    gcc-arm-linux-gnueabihf libc6-dev-armhf-cross
    musl-tools qemu-user-static qemu-system-arm
    nftables iproute2 iputils-ping openssl postgresql
    file curl ca-certificates
    cpio e2fsprogs shellcheck
    chromium fonts-noto-cjk
    prometheus
)

is_installed() {
    dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'
}

missing=()
for p in "${APT_PACKAGES[@]}"; do
    is_installed "$p" || missing+=("$p")
done
if [ "${#missing[@]}" -eq 0 ]; then
    step "apt packages (${#APT_PACKAGES[@]})" "already present"
else
    command -v apt-get >/dev/null 2>&1 || die "apt-get not found; install by hand: ${missing[*]}"
    step "apt-get update" "running (missing: ${missing[*]})"
    "${SUDO[@]}" apt-get update -q </dev/null
    step "apt-get install" "${missing[*]}"
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -q -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
        "${missing[@]}" </dev/null
    still=()
    for p in "${missing[@]}"; do is_installed "$p" || still+=("$p"); done
    [ "${#still[@]}" -eq 0 ] || die "apt packages still missing after install: ${still[*]}"
    step "apt packages" "installed ${#missing[@]}"
fi

# ---------------------------------------------------------------------------
# 1b. Debian arm64 packages of the firmware image (images/fetch-debs.sh)
# ---------------------------------------------------------------------------
if dpkg --print-foreign-architectures | grep -qx arm64; then
    step "dpkg architecture arm64" "already present"
else
    step "dpkg architecture arm64" "adding, apt-get update"
    "${SUDO[@]}" dpkg --add-architecture arm64
    "${SUDO[@]}" apt-get update -q </dev/null
fi
if ! apt-cache show linux-image-arm64:arm64 >/dev/null 2>&1; then
    step "apt index (arm64)" "apt-get update"
    "${SUDO[@]}" apt-get update -q </dev/null
fi
debs="$(bash images/fetch-debs.sh | tail -2 | head -1)" || die "images/fetch-debs.sh failed"
step "image packages (arm64 .debs)" "${debs#fetch-debs.sh: }"

# ---------------------------------------------------------------------------
# 2. rustup
# ---------------------------------------------------------------------------
if command -v rustup >/dev/null 2>&1; then
    step "rustup" "already present ($(rustup --version 2>/dev/null | awk '{print $2}'))"
else
    step "rustup" "installing (rustup-init, no default toolchain)"
    # Downloaded first: the installer must read its script from the file and
    # nothing from stdin (a pipe into `sh -s ... </dev/null` runs nothing).
    rustup_init="$(mktemp)"
    curl --proto '=https' --tlsv1.2 -sSf -o "$rustup_init" https://sh.rustup.rs
    sh "$rustup_init" -y --profile minimal --default-toolchain none --no-modify-path </dev/null
    rm -f "$rustup_init"
    # shellcheck disable=SC1091
    . "${CARGO_HOME:-$HOME/.cargo}/env"
fi

# ---------------------------------------------------------------------------
# 3. Pinned toolchain from rust-toolchain.toml (channel, components, targets)
# ---------------------------------------------------------------------------
TOOLCHAIN_FILE="$ROOT/rust-toolchain.toml"
[ -f "$TOOLCHAIN_FILE" ] || die "missing $TOOLCHAIN_FILE"

# toml_list KEY -> the quoted items of `KEY = ["a", "b"]` in rust-toolchain.toml, one per line.
toml_list() {
    sed -n "s/^[[:space:]]*$1[[:space:]]*=[[:space:]]*\[\(.*\)\].*/\1/p" "$TOOLCHAIN_FILE" |
        tr ',' '\n' | tr -d ' "' | sed '/^$/d'
}
CHANNEL="$(sed -n 's/^[[:space:]]*channel[[:space:]]*=[[:space:]]*"\([^"]*\)".*/\1/p' "$TOOLCHAIN_FILE")"
[ -n "$CHANNEL" ] || die "no channel in $TOOLCHAIN_FILE"
mapfile -t COMPONENTS < <(toml_list components)
mapfile -t TARGETS < <(toml_list targets)

toolchain_missing() {
    local out=()
    if ! rustup run "$CHANNEL" rustc --version >/dev/null 2>&1; then
        echo "toolchain $CHANNEL"
        return
    fi
    local have_c have_t
    have_c="$(rustup component list --installed --toolchain "$CHANNEL" 2>/dev/null)"
    have_t="$(rustup target list --installed --toolchain "$CHANNEL" 2>/dev/null)"
    for c in "${COMPONENTS[@]}"; do
        grep -q "^$c\(-\|$\)" <<<"$have_c" || out+=("component:$c")
    done
    for t in "${TARGETS[@]}"; do
        grep -qx "$t" <<<"$have_t" || out+=("target:$t")
    done
    echo "${out[*]:-}"
}

want="$(toolchain_missing)"
if [ -z "$want" ]; then
    step "rust $CHANNEL" "already present (${COMPONENTS[*]}; ${#TARGETS[@]} targets)"
else
    step "rust $CHANNEL" "installing from rust-toolchain.toml (missing: $want)"
    # rustup >= 1.28 installs the toolchain named by rust-toolchain.toml, with its
    # components and targets; older rustup does that on `rustup show`.
    if ! rustup toolchain install </dev/null; then
        rustup show </dev/null >/dev/null
    fi
    want="$(toolchain_missing)"
    if [ -n "$want" ]; then
        # Belt and braces for rustup versions that skip components of an existing toolchain.
        [ "${#COMPONENTS[@]}" -eq 0 ] || rustup component add --toolchain "$CHANNEL" "${COMPONENTS[@]}" </dev/null
        [ "${#TARGETS[@]}" -eq 0 ] || rustup target add --toolchain "$CHANNEL" "${TARGETS[@]}" </dev/null
    fi
    want="$(toolchain_missing)"
    [ -z "$want" ] || die "rust toolchain still incomplete: $want"
    step "rust $CHANNEL" "installed"
fi

# ---------------------------------------------------------------------------
# 4. nightly + cargo-fuzz (scripts/fuzz.sh)
# ---------------------------------------------------------------------------
if [ "$WANT_FUZZ" -eq 0 ]; then
    step "nightly + cargo-fuzz" "skipped (--no-fuzz)"
elif cargo +nightly fuzz --version >/dev/null 2>&1; then
    step "nightly + cargo-fuzz" "already present ($(cargo +nightly fuzz --version 2>/dev/null))"
else
    if rustup run nightly rustc --version >/dev/null 2>&1; then
        step "nightly toolchain" "already present"
    else
        step "nightly toolchain" "installing (profile minimal)"
        rustup toolchain install nightly --profile minimal </dev/null
    fi
    if cargo +nightly fuzz --version >/dev/null 2>&1; then
        step "cargo-fuzz" "already present"
    else
        step "cargo-fuzz" "installing (cargo install cargo-fuzz --locked)"
        cargo install cargo-fuzz --locked </dev/null
    fi
    cargo +nightly fuzz --version >/dev/null 2>&1 || die "cargo +nightly fuzz still does not run"
    step "nightly + cargo-fuzz" "ready ($(cargo +nightly fuzz --version 2>/dev/null))"
fi

# ---------------------------------------------------------------------------
# 5. playwright-core for the browser test (tests/browser, npm ci from the lock)
# ---------------------------------------------------------------------------
# Node.js and npm are the machine's own (Node.js >= 20: playwright-core needs it);
# the browser is Debian's /usr/bin/chromium (step 1), never a download.
BROWSER_DIR="$ROOT/tests/browser"
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    die "node and npm are needed for the browser test (tests/browser); install Node.js >= 20"
fi
node_major="$(node -p 'process.versions.node.split(".")[0]')"
[ "$node_major" -ge 20 ] || die "Node.js $(node --version) is too old for playwright-core (needs >= 20)"
want_pw="$(node -p "require('$BROWSER_DIR/package-lock.json').packages['node_modules/playwright-core'].version")"
have_pw="$(node -p "try { require('$BROWSER_DIR/node_modules/playwright-core/package.json').version } catch { '' }")"
if [ "$have_pw" = "$want_pw" ]; then
    step "playwright-core $want_pw" "already present"
else
    step "playwright-core $want_pw" "npm ci in tests/browser${have_pw:+ (had $have_pw)}"
    (cd "$BROWSER_DIR" && npm ci --no-audit --no-fund </dev/null)
fi

step "done" "setup complete"
