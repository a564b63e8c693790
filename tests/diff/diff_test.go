package diff

import (
	"context"
	"flag"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
)

// summary counts what the corpus run did.
type summary struct {
	queries, withArgs, instances, executions, passed, failed int
	queriesFailed, corpusErrors                              int
	causes                                                   map[string][]string // cause → query names
}

func (s *summary) cause(c, name string) {
	if !slices.Contains(s.causes[c], name) {
		s.causes[c] = append(s.causes[c], name)
	}
}

// TestDiff runs the corpus on the oracle and through the proxy, in every protocol mode.
func TestDiff(t *testing.T) {
	ctx := context.Background()
	if err := loaded(ctx); err != nil {
		t.Fatalf("load: %v", err)
	}
	entries, err := readCorpus("testdata")
	if err != nil {
		t.Fatalf("corpus: %v", err)
	}
	for _, e := range generatedCorpus() {
		e.seq = len(entries)
		entries = append(entries, e)
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
			if e.args != nil {
				sum.withArgs++
			}
			runEntry(ctx, t, e, oracle, rev, proxy, sum)
			if t.Failed() {
				sum.queriesFailed++
			}
		})
	}

	var b strings.Builder
	fmt.Fprintf(&b, "corpus: %d queries (%d with parameters), %d instances, %d proxy executions: %d passed, %d failed; %d queries failing; %d corpus errors\n",
		sum.queries, sum.withArgs, sum.instances, sum.executions, sum.passed, sum.failed, sum.queriesFailed, sum.corpusErrors)
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
	fmt.Fprintf(&b, "time: oracle %v, oracle (reversed) %v, proxy %v\n", oracle.busy.Round(time.Millisecond), rev.busy.Round(time.Millisecond), proxy.busy.Round(time.Millisecond))
	t.Log("\n" + b.String())
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
	if len(e.set) > 0 {
		for _, s := range []*side{oracle, rev, proxy} {
			if err := s.session(ctx, e.set, false); err != nil {
				report("SET failed: "+err.Error(), "-")
			}
			defer func() {
				if err := s.session(ctx, e.set, true); err != nil {
					t.Errorf("RESET failed: %v", err)
				}
			}()
		}
	}
	ran := map[string]int{} // label → modes run
	for n, in := range e.instances() {
		sum.instances++
		ran[in.label()] = 0
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
		// reverse order must give the same answer. The three sides run concurrently.
		var o, r, p *result
		concurrently(
			func() { o = oracle.run(ctx, modes[0], in.sql, in.args) },
			func() { r = rev.run(ctx, modes[0], in.sql, in.args) },
			func() { p = proxy.run(ctx, modes[0], in.sql, in.args) })
		corpusErr := ""
		switch c, d := compareAs(o, r, ordered, "rev"); {
		case c != "":
			corpusErr = "corpus: not deterministic (oracle vs. oracle with rows reversed): " + d
		case e.expectErr != "" && sqlstate(o.err) != e.expectErr:
			corpusErr = fmt.Sprintf("corpus: oracle should fail with %s, got %v", e.expectErr, o.err)
		case e.expectErr == "" && o.err != nil:
			corpusErr = "corpus: oracle fails: " + errString(o.err)
		}
		if corpusErr != "" {
			report(corpusErr, in.label())
			sum.corpusErrors++
			sum.cause("corpus error", e.name)
			continue
		}
		for i, m := range modesFor(e, n) {
			if i > 0 {
				concurrently(
					func() { o = oracle.run(ctx, m, in.sql, in.args) },
					func() { p = proxy.run(ctx, m, in.sql, in.args) })
			}
			sum.executions++
			ran[in.label()]++
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
	for _, kv := range e.set {
		fmt.Fprintf(&b, "\n  SET %s", kv)
	}
	for _, d := range order {
		fmt.Fprintf(&b, "\n  [%s] %s", compactPlaces(where[d], ran), d)
	}
	t.Error(b.String())
}

var allModes = flag.Bool("diff.allmodes", false, "run every query in every protocol mode (default: simple plus one extended mode per config, alternating)")

// modesFor returns the protocol modes for the n-th instance of e: the simple protocol and
// one of the two extended modes, alternating over configs and queries so that each query
// runs both ways and each extended mode gets half of the instances; queries with
// parameters or expected errors, and every query under -diff.allmodes, run in all modes.
func modesFor(e *entry, n int) []mode {
	if *allModes || e.args != nil || e.expectErr != "" {
		return modes
	}
	return []mode{modes[0], modes[1+(e.seq+n)%2]}
}

// concurrently runs fs in parallel and waits for all of them.
func concurrently(fs ...func()) {
	var wg sync.WaitGroup
	for _, f := range fs[1:] {
		wg.Add(1)
		go func() {
			defer wg.Done()
			f()
		}()
	}
	fs[0]()
	wg.Wait()
}

// compactPlaces renders the config/mode places where a difference showed: a config stands
// alone when it showed in every mode that ran for it ("all" when that is every config).
func compactPlaces(places []string, ran map[string]int) string {
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
	whole := 0
	for _, c := range cfgs {
		if ms := byCfg[c]; len(ms) > 0 && len(ms) < ran[c] {
			out = append(out, c+"/"+strings.Join(ms, "+"))
			continue
		}
		out = append(out, c)
		whole++
	}
	if whole > 1 && whole == len(ran) {
		return "all"
	}
	return strings.Join(out, ", ")
}
