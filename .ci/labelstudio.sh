# == Label Studio server (tests/test_labelstudio.py) ==========================
# Sourced by .ci/run after the install step (it uses $PY; a developer runs
# `PY=python3 . .ci/labelstudio.sh`). The server is the
# `label-studio` package in a virtual environment of its own: its Django pins stay
# out of .venv, and aalearn's client needs none of them (it speaks REST with urllib).
# The tests start and stop the server themselves (one per test module, a free port
# of 127.0.0.1, a temporary data directory); they find it through
# AALEARN_LABEL_STUDIO and skip, saying how to enable them, when it is unset.
echo "== label studio server (own venv)"
LS_VENV=${LS_VENV:-${TMPDIR:-/tmp}/aalearn-ls-venv}
rm -rf "$LS_VENV"
"$PY" -m venv "$LS_VENV"
"$LS_VENV/bin/python" -m pip install -q "label-studio==1.23.2"
export AALEARN_LABEL_STUDIO="$LS_VENV/bin/label-studio"
# `label-studio version` migrates a fresh database and exits: the tests copy it, and a
# server start then takes ~20 s instead of ~2 min (offline, no version check).
LABEL_STUDIO_BASE_DATA_DIR="$LS_VENV/migrated" LATEST_VERSION_CHECK=false \
    COLLECT_ANALYTICS=false "$AALEARN_LABEL_STUDIO" version | grep -i "version:"
export AALEARN_LABEL_STUDIO_DB="$LS_VENV/migrated/label_studio.sqlite3"
# ============================================================================
