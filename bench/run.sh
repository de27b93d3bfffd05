#!/usr/bin/env bash
# Runs a benchmark scenario on a fresh machine: starts the real servers it needs (as ./test.sh does),
# builds in Release, runs it; the scenario appends its row to bench/RESULTS.md.
#   ./bench/run.sh ingest [--messages N] [--size BYTES] [--repeats N] [--accept-only] [--no-record]
set -euo pipefail
cd "$(dirname "$0")/.."
. ./scripts/servers.sh
ensure_servers
dotnet build bench/Tsp.Bench/Tsp.Bench.csproj -c Release -nologo -v quiet
# The gen0 budget the image sets (Dockerfile), so the figures are what a deployment runs.
export DOTNET_GCgen0size="${DOTNET_GCgen0size:-0x4000000}"
exec dotnet bench/Tsp.Bench/bin/Release/net10.0/Tsp.Bench.dll "${@:-help}"
