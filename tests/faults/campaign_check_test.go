package faults

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// settle lets recovery finish after the faults: it waits until no prepared transaction is
// left on the workers (the proxies' recovery finishes or rolls them back) and repairs
// every inactive placement with REPAIR SHARD. It returns what is still left after limit.
func (e *campaignEnv) settle(ctx context.Context, limit time.Duration, tables ...string) (prepared []string, inactive []int64, err error) {
	deadline := time.Now().Add(limit)
	for {
		prepared, err = e.preparedXacts(ctx)
		if err != nil {
			return nil, nil, err
		}
		inactive, err = e.inactiveShards(ctx, tables...)
		if err != nil {
			return nil, nil, err
		}
		if len(prepared) == 0 && len(inactive) == 0 || time.Now().After(deadline) {
			return prepared, inactive, nil
		}
		if len(prepared) == 0 {
			if c, err := pgx.Connect(ctx, e.proxies[0].url()); err == nil {
				for _, s := range inactive {
					c.Exec(ctx, fmt.Sprintf("REPAIR SHARD %d", s))
				}
				c.Close(ctx)
			}
		}
		time.Sleep(time.Second)
	}
}

// readTable reads id and v of every row of a table through a proxy; ids seen twice are
// returned apart.
func readTable(ctx context.Context, url, table string) (map[int64]int64, []int64, error) {
	c, err := pgx.Connect(ctx, url)
	if err != nil {
		return nil, nil, err
	}
	defer c.Close(ctx)
	rows, err := c.Query(ctx, "SELECT id, v FROM "+table)
	if err != nil {
		return nil, nil, err
	}
	defer rows.Close()
	out := map[int64]int64{}
	var dup []int64
	for rows.Next() {
		var id, v int64
		if err := rows.Scan(&id, &v); err != nil {
			return nil, nil, err
		}
		if _, ok := out[id]; ok {
			dup = append(dup, id)
		}
		out[id] = v
	}
	return out, dup, rows.Err()
}

// problems collects the checker's findings, at most a few of each kind.
type problems struct {
	byKind map[string][]string
}

func (p *problems) add(kind, format string, args ...any) {
	if p.byKind == nil {
		p.byKind = map[string][]string{}
	}
	p.byKind[kind] = append(p.byKind[kind], fmt.Sprintf(format, args...))
}

func (p *problems) String() string {
	var kinds []string
	for k := range p.byKind {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	var b strings.Builder
	for _, k := range kinds {
		list := p.byKind[k]
		fmt.Fprintf(&b, "%s: %d\n", k, len(list))
		for i, s := range list {
			if i == 8 {
				fmt.Fprintf(&b, "    ...\n")
				break
			}
			fmt.Fprintf(&b, "    %s\n", s)
		}
	}
	return b.String()
}

// checkRows compares the rows of the tables a proxy returns with what the clients know.
func (l *ledger) checkRows(ctx context.Context, url string, p *problems, tables ...string) error {
	for _, table := range tables {
		got, dup, err := readTable(ctx, url, table)
		if err != nil {
			return fmt.Errorf("read %s: %w", table, err)
		}
		for _, id := range dup {
			p.add("row present more than once", "%s id %d", table, id)
		}
		for id, st := range l.rows[table] {
			v, there := got[id]
			switch {
			case st.present == acked && !there:
				p.add("acknowledged row missing", "%s id %d", table, id)
			case st.present == failed && there:
				p.add("row present whose insert failed or whose delete was acknowledged", "%s id %d (v %d)", table, id, v)
			case there && (v < st.vMin || v > st.vMax):
				p.add("row's update count outside the acknowledged range", "%s id %d: v = %d, acknowledged %d, in doubt %d", table, id, v, st.vMin, st.vMax-st.vMin)
			}
		}
		for id := range got {
			if _, ok := l.rows[table][id]; !ok {
				p.add("row nobody wrote", "%s id %d", table, id)
			}
		}
		for _, g := range l.groups {
			var in, out []string
			for _, r := range g {
				if r.table != table {
					continue
				}
				if _, ok := got[r.id]; ok {
					in = append(in, fmt.Sprint(r.id))
				} else {
					out = append(out, fmt.Sprint(r.id))
				}
			}
			if len(in) > 0 && len(out) > 0 {
				p.add("transaction in doubt partly committed", "%s: ids %s present, %s absent", table, strings.Join(in, ","), strings.Join(out, ","))
			}
		}
	}
	return nil
}

// checkCounters compares the counters with the acknowledged increments.
func (l *ledger) checkCounters(ctx context.Context, url string, p *problems) error {
	c, err := pgx.Connect(ctx, url)
	if err != nil {
		return err
	}
	defer c.Close(ctx)
	rows, err := c.Query(ctx, "SELECT k, n FROM "+campCtr+" ORDER BY k")
	if err != nil {
		return err
	}
	defer rows.Close()
	seen := 0
	for rows.Next() {
		var k int
		var n int64
		if err := rows.Scan(&k, &n); err != nil {
			return err
		}
		seen++
		if k < 1 || k > campCtrN {
			p.add("counter nobody wrote", "k %d", k)
			continue
		}
		if n < l.ctrMin[k] || n > l.ctrMax[k] {
			p.add("counter outside the acknowledged range", "k %d: n = %d, acknowledged %d, in doubt %d", k, n, l.ctrMin[k], l.ctrMax[k]-l.ctrMin[k])
		}
	}
	if seen != campCtrN {
		p.add("counters missing", "%d counters of %d", seen, campCtrN)
	}
	return rows.Err()
}

// opsSummary lists the operations per kind and outcome, and the errors seen.
func (l *ledger) opsSummary() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var kinds []string
	var tot [3]int
	for k, n := range l.ops {
		kinds = append(kinds, fmt.Sprintf("  %-28s acked %6d  failed %5d  in doubt %4d", k, n[acked], n[failed], n[unknown]))
		for i := range tot {
			tot[i] += n[i]
		}
	}
	sort.Strings(kinds)
	var errs []string
	for e, n := range l.errs {
		errs = append(errs, fmt.Sprintf("  %5d  %s", n, e))
	}
	sort.Strings(errs)
	if len(errs) > 30 {
		errs = append(errs[:30], "  ...")
	}
	return fmt.Sprintf("operations: %d acknowledged, %d failed, %d in doubt\n%s\nerrors:\n%s",
		tot[acked], tot[failed], tot[unknown], strings.Join(kinds, "\n"), strings.Join(errs, "\n"))
}
