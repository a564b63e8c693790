package diff

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"testing"
)

// summary counts what the corpus run did.
type summary struct {
	queries, instances, executions, passed, failed int
	queriesFailed, corpusErrors                    int
	causes                                         map[string][]string // cause → query names
}

func (s *summary) cause(c, name string) {
	if !slices.Contains(s.causes[c], name) {
		s.causes[c] = append(s.causes[c], name)
	}
}

// TestDiff runs the corpus on the oracle and through the proxy, in every protocol mode.
func TestDiff(t *testing.T) {
	ctx := context.Background()
	if err := load(ctx); err != nil {
		t.Fatalf("load: %v", err)
	}
	entries, err := readCorpus("testdata")
	if err != nil {
		t.Fatalf("corpus: %v", err)
	}
	oracle := &side{name: "oracle", url: oracleURL()}
	rev := &side{name: "oracle (rows reversed)", url: reversedURL()}
	proxy := &side{name: "proxy", url: proxyURL()}
	defer oracle.close()
	defer rev.close()
	defer proxy.close()

	sum := &summary{causes: map[string][]string{}}
	for _, e := range entries {
		t.Run(e.name, func(t *testing.T) {
			sum.queries++
			runEntry(ctx, t, e, oracle, rev, proxy, sum)
			if t.Failed() {
				sum.queriesFailed++
			}
		})
	}

	var b strings.Builder
	fmt.Fprintf(&b, "corpus: %d queries (%d with parameters), %d instances, %d proxy executions: %d passed, %d failed; %d queries failing; %d corpus errors\n",
		sum.queries, countArgs(entries), sum.instances, sum.executions, sum.passed, sum.failed, sum.queriesFailed, sum.corpusErrors)
	causes := make([]string, 0, len(sum.causes))
	for c := range sum.causes {
		causes = append(causes, c)
	}
	sort.Slice(causes, func(i, j int) bool {
		if len(sum.causes[causes[i]]) != len(sum.causes[causes[j]]) {
			return len(sum.causes[causes[i]]) > len(sum.causes[causes[j]])
		}
		return causes[i] < causes[j]
	})
	for _, c := range causes {
		names := sum.causes[c]
		list := strings.Join(names, " ")
		if len(names) > 12 {
			list = strings.Join(names[:12], " ") + " …"
		}
		fmt.Fprintf(&b, "  %4d queries  %s\n               %s\n", len(names), c, list)
	}
	t.Log("\n" + b.String())
}

func countArgs(es []*entry) int {
	n := 0
	for _, e := range es {
		if e.args != nil {
			n++
		}
	}
	return n
}

// runEntry runs one corpus query for every config it applies to and every mode, and
// reports every difference in one error.
func runEntry(ctx context.Context, t *testing.T, e *entry, oracle, rev, proxy *side, sum *summary) {
	// Outcomes with the same detail are reported once, with the places they happened.
	var order []string
	where := map[string][]string{}
	report := func(detail, place string) {
		if _, ok := where[detail]; !ok {
			order = append(order, detail)
		}
		where[detail] = append(where[detail], place)
	}
	for _, in := range e.instances() {
		sum.instances++
		ordered, limitUnordered, err := shape(in.sql)
		if err != nil && e.expectErr == "" {
			report("corpus: does not parse: "+err.Error(), in.label())
			sum.corpusErrors++
			sum.cause("corpus error", e.name)
			continue
		}
		if limitUnordered {
			report("corpus: LIMIT/OFFSET without ORDER BY is not deterministic", in.label())
			sum.corpusErrors++
			sum.cause("corpus error", e.name)
			continue
		}
		// The oracle must be deterministic: the same query over the same rows stored in the
		// reverse order must give the same answer.
		o := oracle.run(ctx, modes[0], in.sql, in.args)
		r := rev.run(ctx, modes[0], in.sql, in.args)
		if c, d := compareAs(o, r, ordered, "rev"); c != "" {
			report("corpus: not deterministic (oracle vs. oracle with rows reversed): "+d, in.label())
			sum.corpusErrors++
			sum.cause("corpus error", e.name)
			continue
		}
		if e.expectErr != "" && sqlstate(o.err) != e.expectErr {
			report(fmt.Sprintf("corpus: oracle should fail with %s, got %v", e.expectErr, o.err), in.label())
			sum.corpusErrors++
			sum.cause("corpus error", e.name)
			continue
		}
		if e.expectErr == "" && o.err != nil {
			report("corpus: oracle fails: "+errString(o.err), in.label())
			sum.corpusErrors++
			sum.cause("corpus error", e.name)
			continue
		}
		for i, m := range modes {
			if i > 0 {
				o = oracle.run(ctx, m, in.sql, in.args)
			}
			p := proxy.run(ctx, m, in.sql, in.args)
			sum.executions++
			cause, detail := compare(o, p, ordered)
			if cause == "" {
				sum.passed++
				continue
			}
			sum.failed++
			sum.cause(cause, e.name)
			report(detail, in.label()+"/"+m.name)
		}
	}
	if len(order) == 0 {
		return
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s:%d\n  %s", e.file, e.line, strings.ReplaceAll(e.sql, "\n", "\n  "))
	if e.args != nil {
		fmt.Fprintf(&b, "\n  args: %s", strings.Join(e.args, " | "))
	}
	for _, d := range order {
		fmt.Fprintf(&b, "\n  [%s] %s", compactPlaces(where[d]), d)
	}
	t.Error(b.String())
}

// compactPlaces renders config/mode places, folding "all modes" of a config.
func compactPlaces(places []string) string {
	byCfg := map[string][]string{}
	var cfgs []string
	for _, p := range places {
		cfg, m, _ := strings.Cut(p, "/")
		if _, ok := byCfg[cfg]; !ok {
			cfgs = append(cfgs, cfg)
		}
		if m != "" {
			byCfg[cfg] = append(byCfg[cfg], m)
		}
	}
	var out []string
	for _, c := range cfgs {
		ms := byCfg[c]
		if len(ms) == 0 || len(ms) == len(modes) {
			out = append(out, c)
		} else {
			out = append(out, c+"/"+strings.Join(ms, "+"))
		}
	}
	if len(out) > 1 && len(cfgs) == len(configs) && allModes(byCfg) {
		return "all configs"
	}
	return strings.Join(out, ", ")
}

func allModes(byCfg map[string][]string) bool {
	for _, ms := range byCfg {
		if len(ms) != len(modes) {
			return false
		}
	}
	return true
}
