package proxy

import (
	"regexp"
	"strconv"
	"strings"

	"github.com/pgshard/pgshard/metadata"
	"github.com/pgshard/pgshard/pgerr"
)

// Errors and notices reach the client in the client's terms. PostgreSQL's messages about a
// shard name the shard ("permission denied for table orders_102008", constraint
// "orders_pkey_102008"); pgshard's own statements (a coordinator query over bound
// parameters, the event triggers of the metadata schema) add context lines the client
// never wrote. unshardNames and scrubInternal rewrite every field of an ErrorResponse or
// NoticeResponse so that it reads as PostgreSQL would have written it for the
// distributed table and the client's own statement; what PostgreSQL itself shows (the key
// values of a unique violation, the failing row) is kept.

// unshardNames rewrites a worker's error in the names the client knows: a shard table
// "orders_102008" becomes "orders", and the shard's constraints, indexes and row type
// (named like the table, with the same suffix) lose the suffix too, in every field —
// the message, detail, hint, context, internal query and the table, constraint and
// data type names — so that an application that looks at the constraint name (to tell
// which unique key was violated) finds its own. Context lines from pgshard's own
// statements go too (scrubInternal). It reports whether anything changed.
func (s *Server) unshardNames(e *pgerr.Error) bool {
	snap := s.blockNames.with(s.cache.Load())
	changed := scrubInternal(e, true)
	if name, ok := unshardTable(snap, e.TableName); ok {
		e.TableName, changed = name, true
	}
	if name, ok := unshardName(snap, e.ConstraintName); ok {
		e.ConstraintName, changed = name, true
	}
	if name, ok := unshardTable(snap, e.DataTypeName); ok {
		e.DataTypeName, changed = name, true
	}
	// The detail holds data (a unique violation's key values, a failing row): only
	// quoted names are rewritten there, as PostgreSQL quotes the names it puts in a detail.
	if out, ok := unshardText(snap, e.Detail, false); ok {
		e.Detail, changed = out, true
	}
	for _, f := range []*string{&e.Message, &e.Hint, &e.Where} {
		if out, ok := unshardText(snap, *f, true); ok {
			*f, changed = out, true
		}
	}
	if out, ok := unshardText(snap, e.InternalQuery, true); ok {
		e.InternalPosition = shiftPosition(e.InternalQuery, out, e.InternalPosition)
		e.InternalQuery, changed = out, true
	}
	return changed
}

// shiftPosition maps a 1-based character position in old to the same place in new, which
// is old with shard suffixes ("_<digits>", ASCII) removed: the position moves back by the
// characters removed before it.
func shiftPosition(old, new string, pos int32) int32 {
	if pos <= 0 {
		return pos
	}
	// Walk both strings: old's bytes that new lacks were removed.
	oi, ni := 0, 0
	chars := int32(0)   // characters of old passed
	removed := int32(0) // characters removed among them
	for oi < len(old) && chars < pos-1 {
		if ni < len(new) && old[oi] == new[ni] {
			ni++
		} else {
			removed++
		}
		if old[oi] < 0x80 || old[oi] >= 0xC0 {
			chars++
		}
		oi++
	}
	return pos - removed
}

// internalFunction matches a context line of a function of pgshard's metadata schema
// (its event triggers and helpers).
var internalFunction = regexp.MustCompile(`(?i)\bfunction "?pgs_distribution_metadata"?\.`)

// portalParameter matches the context line PostgreSQL adds when a bound parameter's
// value is invalid.
var portalParameter = regexp.MustCompile(`^(unnamed portal|portal "[^"]*") parameter \$[0-9]+`)

// scrubInternal removes from an error what comes from pgshard's own statements rather than
// the client's: the context lines (and the internal query) of the metadata schema's
// functions, which run inside the client's DDL as event triggers, and, when params is
// set, the context lines naming bound parameters, which in an error pgshard reports for
// its own statement are parameters pgshard bound itself (a literal the client wrote
// travels to a shard or to the coordinator as a parameter). It reports whether anything
// changed.
func scrubInternal(e *pgerr.Error, params bool) bool {
	if e.Where == "" {
		return false
	}
	lines := strings.Split(e.Where, "\n")
	// Context lines run from the innermost call out: everything up to the outermost
	// line of an internal function happened inside it.
	cut := -1
	for i, l := range lines {
		if internalFunction.MatchString(l) {
			cut = i
		}
	}
	changed := false
	if cut >= 0 {
		lines = lines[cut+1:]
		e.InternalQuery, e.InternalPosition = "", 0
		changed = true
	}
	if params {
		kept := lines[:0]
		for _, l := range lines {
			if portalParameter.MatchString(l) {
				changed = true
				continue
			}
			kept = append(kept, l)
		}
		lines = kept
	}
	if changed {
		e.Where = strings.Join(lines, "\n")
	}
	return changed
}

// shardSuffix splits "name_<shard id>" when the id is a shard's.
func shardSuffix(snap *metadata.Snapshot, name string) (string, *metadata.Shard) {
	i := strings.LastIndexByte(name, '_')
	if i <= 0 || i == len(name)-1 {
		return "", nil
	}
	id, err := strconv.ParseInt(name[i+1:], 10, 64)
	if err != nil || name[i+1] == '+' || name[i+1] == '-' {
		return "", nil
	}
	sh := snap.Shard(id)
	if sh == nil {
		return "", nil
	}
	return name[:i], sh
}

// unshardTable maps a shard table's name to its distributed table's.
func unshardTable(snap *metadata.Snapshot, name string) (string, bool) {
	base, sh := shardSuffix(snap, name)
	if sh == nil {
		return "", false
	}
	if t := snap.TableByOID(sh.TableID); t == nil || t.Name != base {
		return "", false
	}
	return base, true
}

// unshardName maps a shard's table, constraint or index name to the coordinator's.
func unshardName(snap *metadata.Snapshot, name string) (string, bool) {
	base, sh := shardSuffix(snap, name)
	return base, sh != nil
}

// unshardBare maps a name PostgreSQL wrote without quotes ("permission denied for table
// orders_102008", a qualified name in a statement's text): the shard's table, or a name
// derived from it (orders_pkey_102008), so that an ordinary word that happens to end in
// a shard id is left alone.
func unshardBare(snap *metadata.Snapshot, name string) (string, bool) {
	base, sh := shardSuffix(snap, name)
	if sh == nil {
		return "", false
	}
	t := snap.TableByOID(sh.TableID)
	if t == nil || (base != t.Name && !strings.HasPrefix(base, t.Name+"_")) {
		return "", false
	}
	return base, true
}

// identByte reports whether c may be part of an unquoted identifier.
func identByte(c byte) bool {
	return c == '_' || c == '$' || c >= 0x80 || ('a' <= c && c <= 'z') || ('A' <= c && c <= 'Z') || ('0' <= c && c <= '9')
}

// unshardText maps the shard names in a message: quoted ones ("relation
// \"orders_102008\"") and, if bare is set, unquoted ones too ("permission denied for
// table orders_102008").
func unshardText(snap *metadata.Snapshot, msg string, bare bool) (string, bool) {
	if !strings.Contains(msg, "_") {
		return msg, false
	}
	var b strings.Builder
	changed := false
	last := 0 // msg[last:] is not yet written
	for i := 0; i < len(msg); {
		c := msg[i]
		switch {
		case c == '"':
			end := strings.IndexByte(msg[i+1:], '"')
			if end < 0 {
				i = len(msg)
				continue
			}
			name := msg[i+1 : i+1+end]
			if base, ok := unshardName(snap, name); ok {
				b.WriteString(msg[last : i+1])
				b.WriteString(base)
				last = i + 1 + end
				changed = true
			} else if bare && strings.ContainsAny(name, " \t\n") {
				// Not a name but quoted text (a statement in a context line): look
				// inside it for names.
				i++
				continue
			}
			i += end + 2
		case identByte(c):
			j := i
			for j < len(msg) && identByte(msg[j]) {
				j++
			}
			if bare {
				if base, ok := unshardBare(snap, msg[i:j]); ok {
					b.WriteString(msg[last:i])
					b.WriteString(base)
					last = j
					changed = true
				}
			}
			i = j
		default:
			i++
		}
	}
	if !changed {
		return msg, false
	}
	b.WriteString(msg[last:])
	return b.String(), true
}
