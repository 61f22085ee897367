#!/usr/bin/env bash
# What --with-db (or, with STORE=postgres, --postgres) costs on bench.sh's
# multiport workload (10.201.0.0/16, 15 ports, 167,936 open): the same scan
# without and with a database, one after the other, ROUNDS times, so that
# both see the same machine. The database accumulates the scans, as a
# user's does.
#
#   sudo [STORE=postgres] benches/db-cost.sh [ROUNDS] [TRANSPORT...]     (defaults: 3, xdp raw)
#
# Needs the shared lab (../shared/lab/lab.sh up) and a release build; with
# STORE=postgres, Debian's postgresql, of which it runs a throwaway cluster
# (as nobody, on a Unix socket in a temporary directory). Prints each run,
# then per transport the median wall times and the cost.
set -euo pipefail

ROUNDS=${1:-3}
shift || true
TRANSPORTS=${*:-xdp raw}
HERE=$(cd "$(dirname "$0")" && pwd)
PRTIP=${PRTIP:-$HERE/../target/release/prtip}
LAB=${LAB:-$HERE/../../shared/lab/lab.sh}
eval "$("$LAB" info)"
EXPECT=167936
STORE=${STORE:-sqlite}
DIR=$(mktemp -d)
trap 'rm -rf "$DIR"' EXIT
DB=$DIR/multiport.db

if [ "$STORE" = postgres ]; then
    PG_BIN=$(dirname "$(ls /usr/lib/postgresql/*/bin/initdb | tail -1)")
    chmod 755 "$DIR"
    mkdir "$DIR/pg"
    chown nobody:nogroup "$DIR/pg"
    as_nobody() { setpriv --reuid=nobody --regid=nogroup --clear-groups "$@"; }
    as_nobody "$PG_BIN/initdb" -U prtip --auth=trust -D "$DIR/pg/data" >/dev/null
    as_nobody "$PG_BIN/pg_ctl" -D "$DIR/pg/data" -l "$DIR/pg/log" -w \
        -o "-k $DIR/pg -c listen_addresses='' -p 5432" start >/dev/null
    trap 'as_nobody "$PG_BIN/pg_ctl" -D "$DIR/pg/data" -m immediate stop >/dev/null; rm -rf "$DIR"' EXIT
    PG_URL="host=$DIR/pg port=5432 user=prtip dbname=postgres"
fi

# One scan; prints its wall seconds. Fails unless it found every open port,
# and, with a database, stored each of them.
run() {
    local transport=$1 db=$2 start end found
    local args=(-s syn -p 1-12,22,80,443,8080 "$LAB_RANGE" --transport "$transport" --interface "$LAB_IF" -o ndjson --open -q)
    if [ -n "$db" ] && [ "$STORE" = postgres ]; then
        args+=(--postgres "$PG_URL")
    elif [ -n "$db" ]; then
        args+=(--with-db --database "$db")
    fi
    start=$(date +%s.%N)
    found=$(ip netns exec "$LAB_SCAN" "$PRTIP" "${args[@]}" | grep -c open)
    end=$(date +%s.%N)
    [ "$found" -eq "$EXPECT" ] || { echo "$transport: found $found open ports, not $EXPECT" >&2; exit 1; }
    if [ -n "$db" ]; then
        local stored
        local latest="SELECT COUNT(*) FROM scan_results WHERE scan_id = (SELECT MAX(id) FROM scans)"
        if [ "$STORE" = postgres ]; then
            stored=$("$PG_BIN/psql" "$PG_URL" -Atc "$latest")
        else
            stored=$(sqlite3 "$db" "$latest")
        fi
        [ "$stored" -eq "$EXPECT" ] || { echo "$transport: stored $stored rows, not $EXPECT" >&2; exit 1; }
    fi
    echo "$end - $start" | bc
}

median() { sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

for t in $TRANSPORTS; do
    : >"$DIR/$t.without"
    : >"$DIR/$t.with"
done
for r in $(seq "$ROUNDS"); do
    for t in $TRANSPORTS; do
        without=$(run "$t" "")
        with=$(run "$t" "$DB")
        echo "round $r $t: without ${without} s, with $STORE ${with} s"
        echo "$without" >>"$DIR/$t.without"
        echo "$with" >>"$DIR/$t.with"
    done
done
for t in $TRANSPORTS; do
    a=$(median <"$DIR/$t.without")
    b=$(median <"$DIR/$t.with")
    printf '%s: median without %.2f s, with %.2f s, cost %+.1f%%\n' "$t" "$a" "$b" "$(echo "($b - $a) * 100 / $a" | bc -l)"
done
