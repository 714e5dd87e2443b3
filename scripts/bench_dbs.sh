# Sourced by the side-by-side import benchmarks (bench_labels.sh,
# bench_data.sh): bench_dbs IMPORT_DB PSQL_DB makes both databases afresh
# as the schema's owner and migrates them (not part of the timing), and sets
# import_url (the runtime role's, for instructflow) and psql_url (the
# owner's, for psql); bench_dbs_drop drops them. Needs $work/instructflow.
url="${INSTRUCTFLOW_POSTGRES_URL:-postgres://instructflow:instructflow@127.0.0.1:5432/instructflow?sslmode=disable}"
owner_url="${INSTRUCTFLOW_POSTGRES_OWNER_URL:-postgres://instructflow_owner:instructflow_owner@127.0.0.1:5432/instructflow?sslmode=disable}"

bench_dbs() {
	local base obase query oquery db
	base="${url%%\?*}"; base="${base%/*}"; query="${url#*\?}"
	obase="${owner_url%%\?*}"; obase="${obase%/*}"; oquery="${owner_url#*\?}"
	for db in "$1" "$2"; do
		psql "$owner_url" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "CREATE DATABASE $db"
		INSTRUCTFLOW_POSTGRES_URL="$base/$db?$query" INSTRUCTFLOW_POSTGRES_OWNER_URL="$obase/$db?$oquery" "$work/instructflow" db migrate >/dev/null
	done
	import_url="$base/$1?$query"
	psql_url="$obase/$2?$oquery"
	bench_dropped=("$1" "$2")
}

bench_dbs_drop() {
	local db
	for db in "${bench_dropped[@]}"; do psql "$owner_url" -qc "DROP DATABASE $db WITH (FORCE)"; done
}

now() { date +%s.%N; }
