package tests

import (
	"context"
	"fmt"
	"strings"
	"testing"
)

// enumLabels returns an enum's labels in order on every server, keyed by server name.
func enumLabels(t testing.TB, typ string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, s := range env.C.Servers() {
		var labels *string
		err := connectServer(t, s).QueryRow(context.Background(), `SELECT string_agg(e.enumlabel, ',' ORDER BY e.enumsortorder)
			FROM pg_enum e JOIN pg_type t ON t.oid = e.enumtypid WHERE t.typname = $1`, typ).Scan(&labels)
		if err != nil {
			t.Fatal(err)
		}
		if labels != nil {
			out[s.Name] = *labels
		}
	}
	return out
}

// TestDDLDependentTypes: a migration adds a column of a type (an enum, a domain) or with a
// collation created after the table was distributed: the workers get the type with the
// column. Changes of an enum a distributed table uses (ADD VALUE, RENAME VALUE) reach the
// workers that hold its shards, so values the coordinator accepts are accepted and ordered
// the same on the shards.
func TestDDLDependentTypes(t *testing.T) {
	conn := connect(t)
	table := uniqueName("deps")
	mood, posint, coll := table+"_mood", table+"_posint", table+"_ci"
	distribute(t, conn, fmt.Sprintf("CREATE TABLE %s (k int PRIMARY KEY, v text)", table), table, "k", 4, 2)
	mustExec(t, conn, fmt.Sprintf("INSERT INTO %s SELECT g, 'v' || g FROM generate_series(1, 8) g", table))

	// In a block that rolls back, nothing stays behind.
	mustExec(t, conn, "BEGIN",
		fmt.Sprintf("CREATE TYPE %s AS ENUM ('sad', 'ok', 'happy')", mood),
		fmt.Sprintf("ALTER TABLE %s ADD COLUMN m %s", table, mood),
		"ROLLBACK")
	if got := enumLabels(t, mood); len(got) != 0 {
		t.Fatalf("a rolled-back migration left the enum on %v", got)
	}

	mustExec(t, conn, "BEGIN",
		fmt.Sprintf("CREATE TYPE %s AS ENUM ('sad', 'ok', 'happy')", mood),
		fmt.Sprintf("ALTER TABLE %s ADD COLUMN m %s", table, mood),
		fmt.Sprintf("CREATE DOMAIN %s AS int CHECK (VALUE > 0)", posint),
		fmt.Sprintf("ALTER TABLE %s ADD COLUMN p %s", table, posint),
		"COMMIT")
	checkDefinitions(t, table, false)
	mustExec(t, conn, fmt.Sprintf("UPDATE %s SET m = 'happy', p = k WHERE k <= 4", table))
	if got := queryString(t, conn, fmt.Sprintf("SELECT count(*) FROM %s WHERE m > 'ok'", table)); got != "4" {
		t.Fatalf("enum comparison on the shards: %s", got)
	}
	wantError(t, conn, fmt.Sprintf("INSERT INTO %s (k, p) VALUES (100, -1)", table), "23514", "")

	mustExec(t, conn, fmt.Sprintf("CREATE COLLATION %s (provider = icu, locale = 'und-u-ks-level2', deterministic = false)", coll),
		fmt.Sprintf("ALTER TABLE %s ADD COLUMN name text COLLATE %s", table, coll),
		fmt.Sprintf("UPDATE %s SET name = 'Name' || k", table))
	checkDefinitions(t, table, false)
	if got := queryString(t, conn, fmt.Sprintf("SELECT count(*) FROM %s WHERE name = 'NAME3'", table)); got != "1" {
		t.Fatalf("case-insensitive collation on the shards: %s rows", got)
	}

	// The enum changes; every worker with shards follows.
	mustExec(t, conn, fmt.Sprintf("ALTER TYPE %s ADD VALUE 'ecstatic' AFTER 'happy'", mood))
	mustExec(t, conn, fmt.Sprintf("ALTER TYPE %s ADD VALUE IF NOT EXISTS 'meh' BEFORE 'ok'", mood))
	mustExec(t, conn, fmt.Sprintf("ALTER TYPE %s RENAME VALUE 'sad' TO 'blue'", mood))
	want := "blue,meh,ok,happy,ecstatic"
	for server, got := range enumLabels(t, mood) {
		if got != want {
			t.Errorf("%s: labels %s, want %s", server, got, want)
		}
	}
	mustExec(t, conn, fmt.Sprintf("UPDATE %s SET m = 'ecstatic' WHERE k = 5", table),
		fmt.Sprintf("UPDATE %s SET m = 'blue' WHERE k = 6", table))
	if got := queryString(t, conn, fmt.Sprintf("SELECT string_agg(k::text, ',' ORDER BY m, k) FROM %s WHERE m IS NOT NULL", table)); got != "6,1,2,3,4,5" {
		t.Fatalf("enum order through pgshard: %s", got)
	}
	if got := queryString(t, conn, fmt.Sprintf("SELECT count(*) FROM %s WHERE m > 'happy'", table)); got != "1" {
		t.Fatalf("comparison with a new label on the shards: %s", got)
	}
	// In a block, and rolled back: the labels stay.
	mustExec(t, conn, "BEGIN", fmt.Sprintf("ALTER TYPE %s RENAME VALUE 'blue' TO 'sad'", mood), "ROLLBACK")
	for server, got := range enumLabels(t, mood) {
		if got != want {
			t.Errorf("after ROLLBACK, %s: labels %s, want %s", server, got, want)
		}
	}
	checkDefinitions(t, table, false)
}

// TestDDLFunctionKeptInStep: CREATE OR REPLACE FUNCTION of a function that a distributed
// table's CHECK constraint and index call reaches every worker holding its shards (in
// the same transaction as the coordinator's), so the shards enforce the new definition;
// a function no distributed table calls stays the coordinator's business.
func TestDDLFunctionKeptInStep(t *testing.T) {
	ctx := context.Background()
	conn := connect(t)
	table := uniqueName("fnstep")
	fn := table + "_ok"
	lonely := table + "_lonely"
	create := func(body string) string {
		return fmt.Sprintf("CREATE OR REPLACE FUNCTION %s(v int) RETURNS boolean LANGUAGE sql IMMUTABLE AS $$ SELECT %s $$", fn, body)
	}
	// Made on every server here (distribution would also create it on the workers).
	for _, s := range env.C.Servers() {
		if _, err := s.Exec(ctx, "postgres", create("v >= 0")); err != nil {
			t.Fatal(err)
		}
	}
	distribute(t, conn, fmt.Sprintf("CREATE TABLE %s (k int PRIMARY KEY, v int CHECK (%s(v)))", table, fn), table, "k", 4, 2)
	mustExec(t, conn, fmt.Sprintf("INSERT INTO %s VALUES (1, 5)", table))

	source := func() map[string]string {
		out := map[string]string{}
		for _, s := range env.C.Servers() {
			var src string
			if err := connectServer(t, s).QueryRow(ctx, "SELECT prosrc FROM pg_proc WHERE proname = $1", fn).Scan(&src); err != nil {
				t.Fatalf("%s: %v", s.Name, err)
			}
			out[s.Name] = src
		}
		return out
	}
	// Rolled back: nothing changes anywhere.
	mustExec(t, conn, "BEGIN", create("v >= 10"), "ROLLBACK")
	for server, src := range source() {
		if src != " SELECT v >= 0 " {
			t.Fatalf("after ROLLBACK, %s has %q", server, src)
		}
	}
	mustExec(t, conn, create("v >= 10"))
	for server, src := range source() {
		if src != " SELECT v >= 10 " {
			t.Fatalf("%s has %q after CREATE OR REPLACE through pgshard", server, src)
		}
	}
	wantError(t, conn, fmt.Sprintf("INSERT INTO %s VALUES (2, 7)", table), "23514", "")
	mustExec(t, conn, fmt.Sprintf("INSERT INTO %s VALUES (3, 17)", table))

	// A function no distributed table calls: the coordinator's alone.
	mustExec(t, conn, fmt.Sprintf("CREATE OR REPLACE FUNCTION %s() RETURNS int LANGUAGE sql AS $$ SELECT 1 $$", lonely))
	for _, w := range env.C.Workers {
		var n int
		if err := connectServer(t, w).QueryRow(ctx, "SELECT count(*) FROM pg_proc WHERE proname = $1", lonely).Scan(&n); err != nil || n != 0 {
			t.Fatalf("%s: the coordinator's own function reached the worker (%d, %v)", w.Name, n, err)
		}
	}
	if got := queryString(t, conn, fmt.Sprintf("SELECT %s()", lonely)); got != "1" {
		t.Fatalf("the coordinator's own function: %s", got)
	}
}

// TestDDLDependencyGuard: a change of a type or function that distributed tables' shards
// depend on, made where pgshard does not see it (straight on the coordinator, in a DO
// block sent through pgshard), is refused by the coordinator's event trigger with 0A000;
// the same change sent through pgshard runs everywhere.
func TestDDLDependencyGuard(t *testing.T) {
	ctx := context.Background()
	conn := connect(t)
	table := uniqueName("depguard")
	mood, fn := table+"_mood", table+"_pos"
	for _, s := range env.C.Servers() {
		if _, err := s.Exec(ctx, "postgres", fmt.Sprintf("CREATE FUNCTION %s(v int) RETURNS boolean LANGUAGE sql IMMUTABLE AS $$ SELECT v > 0 $$", fn)); err != nil {
			t.Fatal(err)
		}
	}
	mustExec(t, conn, fmt.Sprintf("CREATE TYPE %s AS ENUM ('a', 'b')", mood))
	distribute(t, conn, fmt.Sprintf("CREATE TABLE %s (k int PRIMARY KEY, m %s, v int CHECK (%s(v)))", table, mood, fn), table, "k", 2, 2)

	coord := connectServer(t, env.C.Coordinator)
	for _, sql := range []string{
		fmt.Sprintf("ALTER TYPE %s ADD VALUE 'c'", mood),
		fmt.Sprintf("ALTER TYPE %s RENAME TO %s_x", mood, mood),
		fmt.Sprintf("CREATE OR REPLACE FUNCTION %s(v int) RETURNS boolean LANGUAGE sql IMMUTABLE AS $$ SELECT v > 1 $$", fn),
		fmt.Sprintf("ALTER FUNCTION %s(int) RENAME TO %s_x", fn, fn),
	} {
		_, err := coord.Exec(ctx, sql)
		if err == nil || !strings.Contains(err.Error(), "0A000") || !strings.Contains(err.Error(), "must run through pgshard") {
			t.Errorf("straight on the coordinator, %s: %v", sql, err)
		}
	}
	_, err := conn.Exec(ctx, fmt.Sprintf("DO $$ BEGIN EXECUTE 'ALTER TYPE %s ADD VALUE ''c'''; END $$", mood))
	if err == nil || !strings.Contains(err.Error(), "0A000") {
		t.Errorf("in a DO block through pgshard: %v", err)
	}
	mustExec(t, conn, fmt.Sprintf("ALTER TYPE %s ADD VALUE 'c'", mood))
	for server, got := range enumLabels(t, mood) {
		if got != "a,b,c" {
			t.Errorf("%s: labels %s", server, got)
		}
	}
	// A type and a function no distributed table uses are the coordinator's business.
	other := table + "_free"
	if _, err := coord.Exec(ctx, fmt.Sprintf("CREATE TYPE %s AS ENUM ('x'); ALTER TYPE %s ADD VALUE 'y'", other, other)); err != nil {
		t.Errorf("a free type: %v", err)
	}
}
