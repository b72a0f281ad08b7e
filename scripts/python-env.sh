#!/usr/bin/env bash
# Builds the Python compatibility suite's virtualenv in .cache/python/venv from
# compat/python/requirements.txt (every package pinned), once per machine: it is
# reused while the requirements and the interpreter stay the same.
#
#   PYTHON                     the interpreter to build it with (default python3, 3.10+)
#   OUTBOX_PYTHON_ENV_TIMEOUT  seconds pip install may take (default 600)
#
# Without Python or PyPI the suite's Go tests skip with the reason; with CI set,
# this script fails instead.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
req=$root/compat/python/requirements.txt
dir=$root/.cache/python
venv=$dir/venv
python=${PYTHON:-python3}
timeout=${OUTBOX_PYTHON_ENV_TIMEOUT:-600}

say() { echo "python-env: $*"; }
unavailable() {
	if [ -n "${CI:-}" ]; then
		echo "python-env: error: $*" >&2
		exit 1
	fi
	say "$*; the Python compatibility tests will skip"
	exit 0
}

command -v "$python" >/dev/null || unavailable "$python not found (set PYTHON)"
"$python" -c 'import sys; sys.exit(sys.version_info < (3, 10))' ||
	unavailable "$("$python" -V 2>&1) is older than 3.10"

mkdir -p "$dir"
exec 9>"$dir/.lock" # one builder at a time: make test may run twice side by side
flock 9

want=$( (cat "$req"; "$python" -VV) | sha256sum | cut -d' ' -f1)
if [ -x "$venv/bin/python" ] && [ "$(cat "$venv/.built" 2>/dev/null)" = "$want" ]; then
	exit 0
fi

say "building $venv from compat/python/requirements.txt with $("$python" -V 2>&1) (pip install, once per machine, at most ${timeout}s)"
rm -rf "$venv"
"$python" -m venv "$venv" || unavailable "$python -m venv failed (Debian: apt-get install python3-venv)"
if ! timeout "$timeout" "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-input \
	-r "$req" >"$dir/pip.log" 2>&1; then
	tail -n 20 "$dir/pip.log" >&2
	rm -rf "$venv"
	unavailable "pip install failed or took over ${timeout}s (log: $dir/pip.log)"
fi
echo "$want" >"$venv/.built"
say "ready: $venv"
