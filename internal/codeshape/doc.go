// Package codeshape holds no code, only a test that keeps the module's
// shape in check: it parses every non-test Go file of the module and fails
// when a function or method is longer than maxLines, unless the function is
// on an explicit allowlist of functions that are known to be long and are
// waiting to be split. The allowlist may only shrink: an entry whose
// function is no longer too long (or no longer exists) also fails the test.
//
// Run it with `go test ./internal/codeshape/ -v` to see the ten longest
// functions.
package codeshape
