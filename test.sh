#!/usr/bin/env bash
# Runs every test against real servers. On a fresh Debian machine (as root) it installs and starts
# what the tests need: redis-server and PostgreSQL on loopback, kcat for Kafka tests, Prometheus and Chromium. Ends with one
# line "N passed, N failed, N skipped" summed over every test project.
set -euo pipefail
cd "$(dirname "$0")"
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1

. ./scripts/servers.sh
ensure_servers
drop_stale_test_data

results_dir=$(mktemp -d)
status=0
dotnet build Tsp.sln -c Release -nologo -v quiet || exit 1
# One project at a time, each into its own folder: cluster tests get both cores, and no TRX file
# can overwrite another's.
for project in tests/*/*.csproj; do
  name=$(basename "$project" .csproj)
  dotnet test "$project" -c Release --no-build --logger "trx;LogFileName=$name.trx" \
    --results-directory "$results_dir/$name" "$@" || status=$?
done

# Totals from the TRX files: one per test project.
python3 - "$results_dir" <<'PY' || status=1
import sys, glob, xml.etree.ElementTree as ET
ns = {"t": "http://microsoft.com/schemas/VisualStudio/TeamTest/2010"}
passed = failed = skipped = 0
files = glob.glob(sys.argv[1] + "/**/*.trx", recursive=True)
for f in files:
    c = ET.parse(f).getroot().find("t:ResultSummary/t:Counters", ns)
    passed += int(c.get("passed")); failed += int(c.get("failed")) + int(c.get("error")) + int(c.get("timeout")) + int(c.get("aborted"))
    skipped += int(c.get("notExecuted")) + int(c.get("inconclusive"))
print(f"test projects: {len(files)}")
print(f"{passed} passed, {failed} failed, {skipped} skipped")
sys.exit(1 if failed or passed == 0 else 0)
PY
rm -rf "$results_dir"
exit $status
