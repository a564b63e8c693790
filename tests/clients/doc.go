// Package clients proves that real PostgreSQL client libraries work through the pgshard
// proxy. It holds only tests: TestMain starts a coordinator, four workers and an in-process
// proxy once; each test creates a table through the proxy, distributes it on its bigint key
// (8 shards, replication factor 2), runs the same workload in the client's own language
// against the proxy, and then checks the workers directly: every row in the shard whose hash
// range holds hashint8(id), both placements of every shard identical, 490 rows in all.
//
// The workload (testdata/workload.py, testdata/workload.js, testdata/Workload.java) uses
// each driver's normal API: 200 parameterized INSERTs (names with quotes and non-ASCII
// characters), reads by key checked value by value (numeric and date types as the driver
// returns them), UPDATE and DELETE by key with row counts, a multi-shard count and sum,
// COPY FROM STDIN (CSV) and COPY TO STDOUT through the driver's COPY API, canceling a
// running pg_sleep with the driver's cancel facility (SQLSTATE 57014, then the same
// connection still works), a duplicate key (SQLSTATE 23505) followed by a successful query,
// and a committed and a rolled-back transaction each touching two shards.
//
// Clients and how their runtimes are installed:
//
//   - TestPsycopg2: Python psycopg2. The test uses /usr/bin/python3 (or python3 on PATH)
//     when it imports psycopg2; otherwise, as root on Debian, it runs
//     `apt-get install -y python3-psycopg2` (after `apt-get update` if needed). Skipped when
//     there is no python3, or psycopg2 is missing and the test is not root.
//   - TestNodePostgres: Node.js node-postgres (npm packages pg and pg-copy-streams, pinned
//     versions). The test runs `npm install --no-audit --no-fund pg@... pg-copy-streams@...`
//     once into a cache directory ($XDG_CACHE_HOME or ~/.cache, pgshard/node-<hash of the
//     versions>) and runs the script with NODE_PATH pointing there; this needs the npm
//     registry the first time. Skipped when node or npm is not installed (Debian: apt-get
//     install nodejs npm).
//   - TestJDBC: the PostgreSQL JDBC driver with Java 17 or later. The driver jar is
//     $PGSHARD_JDBC_JAR or Debian's /usr/share/java/postgresql.jar; when missing, as root on
//     Debian, the test runs `apt-get install -y libpostgresql-jdbc-java`. The program is
//     compiled with javac into a temporary directory. Skipped when java or javac is not
//     installed (Debian: apt-get install default-jdk-headless), or the jar is missing and
//     the test is not root.
//
// Run them with `go test ./tests/clients/`; they need the PostgreSQL server binaries, like
// the other end-to-end tests, and do nothing under -short.
package clients
