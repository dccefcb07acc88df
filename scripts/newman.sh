#!/usr/bin/env bash
# newman.sh BASE_URL KEY [newman run options...]
#
# Runs the Postman collection (postman/duckgrid.postman_collection.json) with
# the pinned newman (scripts/node-deps.sh) against a running duckgrid:
#
#   scripts/newman.sh http://127.0.0.1:8080 "$(cat data/duckgrid.duckdb.admin-key)"
#
# KEY must be an admin key: the collection creates and drops its own tables,
# views and keys. The key goes to newman in a private environment file
# (mode 0600, removed on exit), never on a command line where `ps` shows it.
# Extra arguments go to `newman run` (e.g. --reporters cli,json
# --reporter-json-export out.json, or --folder "Seed test cases").
# Exit status: newman's (0 when every assertion passed).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ $# -lt 2 ]; then
  echo "usage: scripts/newman.sh BASE_URL KEY [newman run options...]" >&2
  exit 2
fi
base=${1%/}
key=$2
shift 2

NEWMAN=third_party/node/node_modules/.bin/newman
[ -x "$NEWMAN" ] || bash scripts/node-deps.sh

envfile=$(mktemp)
trap 'rm -f "$envfile"' EXIT
chmod 600 "$envfile"
# Fills the environment template's baseUrl and apiKey (values passed through
# the environment, so no quoting can break the JSON).
DG_BASE="$base" DG_KEY="$key" node -e '
  const fs = require("fs");
  const env = JSON.parse(fs.readFileSync(process.argv[1], "utf8"));
  for (const v of env.values) {
    if (v.key === "baseUrl") v.value = process.env.DG_BASE;
    if (v.key === "apiKey") v.value = process.env.DG_KEY;
  }
  fs.writeFileSync(process.argv[2], JSON.stringify(env));
' postman/duckgrid.postman_environment.json "$envfile"

# No telemetry from any package (swagger-ui-dist's scarf is never run, as
# node-deps.sh skips install scripts; this is belt and braces); newman itself
# checks for no updates. FORCE_COLOR=0 keeps escape codes out of logs.
export SCARF_ANALYTICS=false DO_NOT_TRACK=1 FORCE_COLOR=0
exec "$NEWMAN" run postman/duckgrid.postman_collection.json \
  --environment "$envfile" \
  --timeout-request 60000 \
  --color off \
  "$@"
