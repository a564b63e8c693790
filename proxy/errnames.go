package proxy

import (
	"strconv"
	"strings"

	"github.com/pgshard/pgshard/metadata"
	"github.com/pgshard/pgshard/metadata/pgerr"
)

// unshardNames rewrites a worker's error in the names the client knows: a shard table
// "orders_102008" becomes "orders", and the shard's constraints and indexes (named like
// the table, with the same suffix) lose the suffix too, so that the error reads as
// PostgreSQL would have written it for the distributed table, and an application that
// looks at the constraint name (to tell which unique key was violated) finds its own.
// It reports whether anything changed.
func (s *Server) unshardNames(e *pgerr.Error) bool {
	snap := s.cache.Load()
	changed := false
	if name, ok := unshardTable(snap, e.TableName); ok {
		e.TableName, changed = name, true
	}
	if name, ok := unshardName(snap, e.ConstraintName); ok {
		e.ConstraintName, changed = name, true
	}
	for _, f := range []*string{&e.Message, &e.Detail, &e.Hint, &e.Where} {
		if out, ok := unshardQuoted(snap, *f); ok {
			*f, changed = out, true
		}
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

// unshardQuoted maps the quoted names in a message ("relation \"orders_102008\"").
func unshardQuoted(snap *metadata.Snapshot, msg string) (string, bool) {
	if !strings.Contains(msg, `"`) {
		return msg, false
	}
	var b strings.Builder
	changed := false
	rest := msg
	for {
		open := strings.IndexByte(rest, '"')
		if open < 0 {
			break
		}
		end := strings.IndexByte(rest[open+1:], '"')
		if end < 0 {
			break
		}
		name := rest[open+1 : open+1+end]
		b.WriteString(rest[:open+1])
		if base, ok := unshardName(snap, name); ok {
			b.WriteString(base)
			changed = true
		} else {
			b.WriteString(name)
		}
		b.WriteByte('"')
		rest = rest[open+1+end+1:]
	}
	if !changed {
		return msg, false
	}
	b.WriteString(rest)
	return b.String(), true
}
