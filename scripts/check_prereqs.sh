#!/usr/bin/env bash
# Fails with one clear line when a prerequisite the pipeline needs is missing.
set -euo pipefail
PYTHON="${PYTHON:-python3.11}"
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3
if ! "$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else 1)' 2>/dev/null; then
  echo "error: Python 3.11 is required (found: $("$PYTHON" --version 2>&1)); install it or set PYTHON=/path/to/python3.11" >&2
  exit 1
fi
if ! command -v java >/dev/null 2>&1; then
  echo "error: Java 17 is required by Spark 4 but 'java' is not on PATH (Debian/Ubuntu: apt-get install openjdk-17-jre-headless)" >&2
  exit 1
fi
JAVA_MAJOR=$(java -version 2>&1 | awk -F'"' '/version/ {split($2, v, "."); print v[1]; exit}')
if [ "${JAVA_MAJOR:-0}" -lt 17 ]; then
  echo "error: Java 17 or newer is required by Spark 4 (found Java ${JAVA_MAJOR:-unknown}); set JAVA_HOME or install openjdk-17-jre-headless" >&2
  exit 1
fi
echo "$PYTHON"
