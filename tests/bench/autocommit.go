package main

import (
	"context"
	"fmt"
	"time"
)

// autocommitScripts are the single-row autocommit writes of the autocommit benchmark.
var autocommitScripts = []struct{ op, script string }{
	{"insert", "\\set k random(1000000, 4000000000000)\nINSERT INTO %s (k, v) VALUES (:k, 1) ON CONFLICT (k) DO NOTHING;\n"},
	{"update", "\\set k random(1, 100000)\nUPDATE %s SET v = v + 1 WHERE k = :k;\n"},
}

// runAutocommit is the autocommit benchmark: single-row INSERT and UPDATE outside a
// transaction block through pgshard (serve, 16 shards on four workers) with replication 2
// against replication 1, and on one plain PostgreSQL as the reference, with each number of
// clients in clientsList, in alternating rounds of d each. It prints mean latencies and
// throughputs and the ratio rf2 / rf1.
func runAutocommit(clientsList []int, d time.Duration, rounds int, modes []string) error {
	ctx := context.Background()
	e, err := startShardEnv(ctx, "autocommit")
	if err != nil {
		return err
	}
	defer e.close()
	gen := "SELECT g AS k, 0::bigint AS v FROM generate_series(1::bigint, 100000) g"
	if err := e.benchTable(ctx, "ac", "CREATE TABLE %s (k bigint PRIMARY KEY, v bigint NOT NULL)", "k", "hashint8", gen, []int{1, 2}); err != nil {
		return err
	}
	targets := e.targets("ac")
	for _, clients := range clientsList {
		for _, mode := range modes {
			for _, s := range autocommitScripts {
				results := map[string][]benchRun{}
				for r := 0; r < rounds; r++ {
					for _, t := range targets {
						res, err := e.runPgbench(t, s.op, s.script, mode, clients, d)
						if err != nil {
							return err
						}
						if res.aborted > 0 {
							return fmt.Errorf("%s on %s: %d clients aborted: %s", s.op, t.name, res.aborted, res.firstErr)
						}
						results[t.name] = append(results[t.name], res)
						fmt.Printf("  round %d %-6s %-17s %-8s %d clients %9.0f tps %8.3f ms\n", r+1, s.op, t.name, mode, clients, res.tps, res.lat)
					}
				}
				reportAutocommit(s.op, mode, clients, targets, results)
			}
		}
	}
	return nil
}

// reportAutocommit prints the median latency and throughput of each target and the ratios
// rf2 / rf1 and to plain PostgreSQL.
func reportAutocommit(op, mode string, clients int, targets []benchTarget, results map[string][]benchRun) {
	lat, tps := map[string]float64{}, map[string]float64{}
	for _, t := range targets {
		var ls, ts []float64
		for _, r := range results[t.name] {
			ls, ts = append(ls, r.lat), append(ts, r.tps)
		}
		lat[t.name], tps[t.name] = medianF(ls), medianF(ts)
	}
	plain, rf1, rf2 := targets[0].name, targets[1].name, targets[2].name
	fmt.Printf("\nautocommit single-row %s, -M %s, %d clients, median of %d rounds:\n", op, mode, clients, len(results[plain]))
	fmt.Printf("%-17s %10s %12s %16s\n", "target", "tps", "latency ms", "latency / plain")
	for _, t := range targets {
		fmt.Printf("%-17s %10.0f %12.3f %16.2f\n", t.name, tps[t.name], lat[t.name], lat[t.name]/lat[plain])
	}
	fmt.Printf("%-17s %10.2f %12.2f   (goal: latency within 1.5x)\n\n", "ratio rf2 / rf1", tps[rf2]/tps[rf1], lat[rf2]/lat[rf1])
}
