#!/bin/sh
# Install ttft-exporter (with the `otel` extra: OTLP export when `otel:` is set, and
# `uvloop`, the event loop `ttft-exporter bench` takes) from the source tree SRC into a
# fresh virtualenv at PREFIX.
# The Dockerfile's build stage runs this; so does tests/unit/deploy/test_docker.py, which
# is how the image's install steps are tested on a machine without a Docker engine.
set -eu
if [ "$#" -ne 2 ]; then
  echo "usage: install.sh PREFIX SRC" >&2
  exit 2
fi
prefix=$1
src=$2
python3 -m venv "$prefix"
"$prefix/bin/python" -m pip install --no-cache-dir --disable-pip-version-check --no-compile "$src[otel,uvloop]"
# Compile bytecode now: at run time the root filesystem is read-only and
# PYTHONDONTWRITEBYTECODE is set, so nothing would cache it later.
"$prefix/bin/python" -m compileall -q "$prefix/lib"
# The build tools are not needed at run time.
"$prefix/bin/python" -m pip uninstall -q -y pip
