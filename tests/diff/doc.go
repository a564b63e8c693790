// Package diff is pgshard's differential test oracle: the same data is loaded into plain
// tables of a plain database (the oracle) and into distributed tables through the proxy,
// a corpus of SELECT queries (testdata/*.sql) runs both ways, and every difference that a
// client could see — error or not and its SQLSTATE, column names and types, command tag,
// number of rows, values, and order when the query has a top-level ORDER BY — fails.
//
// Run it with
//
//	go test -count=1 ./tests/diff/              # whole corpus
//	go test -count=1 ./tests/diff/ -run 'TestDiff/agg'   # one corpus file
//	go test -count=1 ./tests/diff/ -run 'TestDiff/agg_012' # one query
//	go test -count=1 ./tests/diff/ -diff.allmodes          # every query in all three protocol modes
//
// The corpus format is described in testdata/README.md.
package diff
