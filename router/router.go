package router

import (
	"container/list"
	"errors"
	"strconv"
	"strings"
	"sync"

	pg_query "github.com/pganalyze/pg_query_go/v5"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/pgshard/pgshard/metadata"
	"github.com/pgshard/pgshard/pgerr"
	"github.com/pgshard/pgshard/router/pgparse"
	"github.com/pgshard/pgshard/router/sqllex"
)

// Session is what planning needs to know of a client session.
type Session struct {
	// User is the session user (for "$user" in the search path).
	User string
	// SearchPath is the session's search_path setting, as SHOW search_path prints it.
	SearchPath string
	// Names, when not nil, says where PostgreSQL resolves each unqualified name of a
	// distributed table in this session: the schema of the relation the name reaches
	// (which may be another relation that shadows the distributed table: a temporary
	// table, a table earlier in the search path), absent when no relation of that name is
	// visible. It is the coordinator's own answer, so that resolution follows PostgreSQL's
	// rules exactly; SearchPath is used only without it. NamesKey identifies Names in
	// the plan cache.
	Names    map[string]string
	NamesKey string
	// Lex is how the session's server reads statement text (its
	// standard_conforming_strings and backslash_quote): the router reads it the same way.
	Lex sqllex.Mode
}

// Config configures a Router.
type Config struct {
	// CacheSize bounds the number of cached plans (default 10000).
	CacheSize int
}

// Router plans statements. It is safe for concurrent use; plans are cached by statement
// shape (the text with its literals taken out), search path and metadata schema version.
type Router struct {
	mu    sync.Mutex
	max   int
	lru   *list.List
	items map[cacheKey]*list.Element
	bytes int // statement text held by the cache

	hits, misses uint64
}

type cacheKey struct {
	text    string // shape, or exact text for plans that depend on literal values
	exact   bool
	path    string
	version uint64
	lex     sqllex.Mode
}

// The plan cache holds at most maxCacheText bytes of statement text (plans grow with
// their text: about ten times it, measured), and no plan of a statement longer than
// maxCachedText: a client sending large distinct statements must not fill the proxy's
// memory.
const (
	maxCacheText  = 32 << 20
	maxCachedText = 1 << 20
)

type cacheEntry struct {
	key   cacheKey
	batch *Batch
}

// New returns a router.
func New(cfg Config) *Router {
	if cfg.CacheSize <= 0 {
		cfg.CacheSize = 10000
	}
	return &Router{max: cfg.CacheSize, lru: list.New(), items: map[cacheKey]*list.Element{}}
}

// Stats returns cache hits and misses.
func (r *Router) Stats() (hits, misses uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.hits, r.misses
}

// Tokenize scans text into an Input, as PostgreSQL reads it in a session whose settings
// are mode.
func Tokenize(text string, mode sqllex.Mode) *Input {
	in := &Input{Text: text, Mode: mode}
	in.Toks = sqllex.ScanMode(text, make([]sqllex.Token, 0, 32), mode)
	backslash := strings.IndexByte(text, '\\') >= 0
	for i, t := range in.Toks {
		if t.Literal() {
			if backslash && t.Kind == sqllex.String {
				if s := sqllex.Portable(text, in.Toks, i); len(s) != int(t.End-t.Start) {
					if in.portable == nil {
						in.portable = map[int]string{}
					}
					in.portable[len(in.Lits)] = s
				}
			}
			in.Lits = append(in.Lits, int32(i))
		}
	}
	return in
}

// shape returns in's text with every literal replaced by a marker of its kind.
func shape(in *Input) string {
	if len(in.Lits) == 0 {
		return in.Text
	}
	var b strings.Builder
	b.Grow(len(in.Text))
	pos := 0
	for _, ti := range in.Lits {
		t := in.Toks[ti]
		b.WriteString(in.Text[pos:t.Start])
		b.WriteString(litMarker(in.Text, t))
		pos = int(t.End)
	}
	b.WriteString(in.Text[pos:])
	return b.String()
}

func litMarker(text string, t sqllex.Token) string {
	s := text[t.Start:t.End]
	switch t.Kind {
	case sqllex.Number:
		for i := 0; i < len(s); i++ {
			if s[i] < '0' || s[i] > '9' {
				return "\x01n"
			}
		}
		return "\x01i"
	case sqllex.BitStr:
		return "\x01b"
	case sqllex.String:
		if s[0] != '\'' || t.Esc {
			// A string the proxy cannot decode (U&'...', an E'...' with an invalid
			// escape) is planned apart from the others: its value cannot be hashed
			// from the text.
			if _, ok := sqllex.StringValue(text, t); !ok {
				return "\x01u"
			}
		}
	}
	return "\x01s"
}

// InternalMark marks pgshard's own statements that write a distributed table's prototype
// on the coordinator (TRUNCATE, writes no shard can match), which the prototype's
// triggers let through (see metadata/store/schema.sql). Plan refuses client statements
// that contain it, so that no client can pass for pgshard.
const InternalMark = "/* pgshard-internal-statement */"

// internalMarkWord is the part of InternalMark that Plan looks for.
const internalMarkWord = "pgshard-internal-statement"

// Plan returns the plan of the query string text and the Input to execute it with.
func (r *Router) Plan(text string, snap *metadata.Snapshot, sess *Session) (*Batch, *Input) {
	in := Tokenize(text, sess.Lex)
	if st := PlanAdmin(text); st != nil {
		return &Batch{Stmts: []*Statement{st}}, in
	}
	if strings.Contains(text, internalMarkWord) {
		return &Batch{Stmts: []*Statement{{Kind: Error, Err: pgerr.New(pgerr.Code("42501"),
			"pgshard reserves %q for its own statements", internalMarkWord)}}}, in
	}
	if sess.Lex&(sqllex.ClientOnlyEncoding|sqllex.ConvertedEncoding) != 0 && snap.HasTables() && !ascii(text) {
		// A backslash in the second byte of a character would be an escape to pgshard
		// and not to PostgreSQL: the statement could mean something else here.
		return &Batch{Stmts: []*Statement{{Kind: Error, Err: pgerr.New(pgerr.FeatureNotSupported,
			"pgshard does not read statements with non-ASCII characters in this client_encoding").
			WithHint("Use client_encoding UTF8.")}}}, in
	}
	key := cacheKey{text: shape(in), path: sess.SearchPath, version: snap.SchemaVersion, lex: sess.Lex}
	if sess.Names != nil {
		key.path = "\x00" + sess.NamesKey
	}
	if b := r.get(key); b != nil {
		return b, in
	}
	exactKey := key
	exactKey.text, exactKey.exact = text, true
	if len(in.Lits) > 0 {
		if b := r.get(exactKey); b != nil {
			return b, in
		}
	}
	r.mu.Lock()
	r.misses++
	r.mu.Unlock()
	b, exact := plan(in, snap, sess)
	if exact {
		r.put(exactKey, b)
	} else {
		r.put(key, b)
	}
	return b, in
}

func (r *Router) get(k cacheKey) *Batch {
	r.mu.Lock()
	defer r.mu.Unlock()
	if e, ok := r.items[k]; ok {
		r.lru.MoveToFront(e)
		r.hits++
		return e.Value.(*cacheEntry).batch
	}
	return nil
}

func (r *Router) put(k cacheKey, b *Batch) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if e, ok := r.items[k]; ok {
		e.Value.(*cacheEntry).batch = b
		r.lru.MoveToFront(e)
		return
	}
	if len(k.text) > maxCachedText {
		return
	}
	r.items[k] = r.lru.PushFront(&cacheEntry{key: k, batch: b})
	r.bytes += len(k.text)
	for r.lru.Len() > r.max || r.bytes > maxCacheText {
		e := r.lru.Back()
		r.lru.Remove(e)
		delete(r.items, e.Value.(*cacheEntry).key)
		r.bytes -= len(e.Value.(*cacheEntry).key.text)
	}
}

// plan parses and plans a query string. exact reports that the plan depends on the
// values of literals, so it may only be reused for the identical text.
func plan(in *Input, snap *metadata.Snapshot, sess *Session) (*Batch, bool) {
	tree, err := pgparse.Parse(in.Text, in.Toks, in.Mode)
	if err != nil {
		if alt, ok := sqllex.BlankContinuationComments(in.Text, in.Toks); ok {
			tree, err = pgparse.Parse(alt, in.Toks, in.Mode)
		}
	}
	if err != nil {
		var perr *pgerr.Error
		if errors.As(err, &perr) {
			// Too deep to parse safely, or the parser's stack overflowed: nothing of
			// the string runs, and no backend sees it.
			return &Batch{Stmts: []*Statement{{Kind: Error, Err: perr}}}, false
		}
		// The coordinator reports the syntax error, with PostgreSQL's own message,
		// SQLSTATE and position, and runs nothing of the string. Once distributed
		// tables exist, the text is only parsed there, never run: were the
		// coordinator to read it otherwise than pgshard (a setting pgshard read
		// wrongly, a parser difference), it could run on a distributed table's
		// prototype, or run code pgshard never saw.
		b := coordinatorBatch(in)
		if snap.HasTables() {
			b.AllCoordinator = false
			b.Stmts[0].Unparsed = true
		}
		// The batch holds the text as it is, literals and all: it serves that text
		// only, never another of the same shape (whose literals it would replace).
		return b, true
	}
	p := &planner{stmtText: stmtText{in: in, litIdx: map[int32]int{}}, snap: snap, sess: sess, aconst: map[int32]bool{}}
	for i, ti := range in.Lits {
		p.litIdx[ti] = i
	}
	p.searchPath = parseSearchPath(sess.SearchPath, sess.User)
	b := &Batch{AllCoordinator: true}
	ddl := false
	for _, raw := range tree.Stmts {
		st := p.statement(raw)
		if st.Kind != Coordinator {
			b.AllCoordinator = false
		}
		if ddl && b.AllCoordinator && mentionsDistributedName(raw, snap) {
			// A statement after one that may create, drop or rename relations names a
			// distributed table: it is planned when it runs, against the names as they are
			// then.
			b.AllCoordinator = false
		}
		ddl = ddl || st.DDL
		b.Stmts = append(b.Stmts, st)
	}
	if len(b.Stmts) == 0 {
		// An empty query string (only comments or semicolons).
		b.Stmts = nil
	}
	exact := p.exact
	for _, ti := range in.Lits {
		if !p.aconst[ti] {
			exact = true // a literal the parser did not turn into a constant (e.g. UESCAPE)
		}
	}
	return b, exact
}

// mentionsDistributedName reports whether a statement refers to a relation by a name
// that some distributed table has (in any schema).
func mentionsDistributedName(raw *pg_query.RawStmt, snap *metadata.Snapshot) bool {
	if !snap.HasTables() {
		return false
	}
	names := map[string]bool{}
	for _, t := range snap.Tables() {
		names[t.Name] = true
	}
	root := nodeMessage(raw.Stmt)
	if root == nil {
		return false
	}
	found := false
	walk(root, func(m protoreflect.Message, _ []frame) bool {
		if rv, ok := m.Interface().(*pg_query.RangeVar); ok && names[rv.Relname] {
			found = true
		}
		return !found
	})
	return found
}

func coordinatorBatch(in *Input) *Batch {
	bl := newBuilder(in, nil)
	bl.raw(0, len(in.Text))
	return &Batch{AllCoordinator: true, Stmts: []*Statement{{Kind: Coordinator, Text: bl.done()}}}
}

// parseSearchPath splits a search_path setting into schema names.
func parseSearchPath(sp, user string) []string {
	if sp == "" {
		sp = `"$user", public`
	}
	var out []string
	for _, part := range splitList(sp) {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		if part[0] == '"' {
			part = strings.ReplaceAll(strings.Trim(part, `"`), `""`, `"`)
		} else {
			part = strings.ToLower(part)
		}
		if part == "$user" {
			part = user
		}
		out = append(out, part)
	}
	return out
}

func splitList(s string) []string {
	var out []string
	inq := false
	start := 0
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '"':
			inq = !inq
		case ',':
			if !inq {
				out = append(out, s[start:i])
				start = i + 1
			}
		}
	}
	return append(out, s[start:])
}

// ascii reports whether s is all ASCII.
func ascii(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// itoa is strconv.Itoa, short.
func itoa(i int) string { return strconv.Itoa(i) }
