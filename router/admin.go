package router

import (
	"strings"

	"github.com/pgshard/pgshard/router/sqllex"
)

// Admin statements are pgshard's own (SHOW NODES, SHOW SHARDS [table], SHOW PLACEMENTS
// [shard], SHOW REPAIRS, SHOW POOLS, SHOW STATS, SHOW VERSION, SHOW TRANSACTIONS,
// SHOW DRIFT [table] [WITH CHECKSUM], REPAIR SHARD id, RECOVER TRANSACTIONS): the
// proxy answers them itself (package proxy/control). They are recognised from their
// tokens before PostgreSQL's parser sees the text (REPAIR SHARD is not SQL, and SHOW
// NODES would read as a setting), and only as the whole query string: anything else,
// "SHOW work_mem" say, is SQL for the coordinator.

// AdminCommand is what an admin statement asks for.
type AdminCommand struct {
	// Name is the command, its two words in upper case ("SHOW NODES", "REPAIR SHARD").
	Name string
	// Arg is its argument as written ("" for none): a number or a (qualified) name.
	Arg string
	// Checksum is SHOW DRIFT's WITH CHECKSUM: compare the placements' contents too.
	Checksum bool
}

// PlanAdmin returns the plan of text when it is an admin statement (kind Admin), nil
// otherwise. It reads nothing but the text, so that the proxy may ask before it does any
// work for planning SQL; Plan gives the same answer.
func PlanAdmin(text string) *Statement {
	cmd, arg, ok := adminCommand(text)
	if !ok {
		return nil
	}
	c := &AdminCommand{Name: cmd, Arg: arg}
	if cmd == "SHOW DRIFT" {
		c.Arg, c.Checksum = strings.CutSuffix(arg, withChecksum)
		c.Arg = strings.TrimSpace(c.Arg)
	}
	return &Statement{Kind: Admin, Command: c}
}

// adminCommand recognises pgshard's admin statements (before any parsing): it returns
// the command ("SHOW NODES", "REPAIR SHARD", ...) and its argument. Comments and whitespace
// may come anywhere, as in SQL, and semicolons at the end.
func adminCommand(q string) (cmd, arg string, ok bool) {
	if len(q) > 4096 || !adminStart(q) {
		return "", "", false
	}
	var buf [16]sqllex.Token
	toks := sqllex.Scan(q, buf[:0])
	for len(toks) > 0 && q[toks[len(toks)-1].Start] == ';' && toks[len(toks)-1].Kind == sqllex.Punct {
		toks = toks[:len(toks)-1]
	}
	if len(toks) < 2 || toks[0].Kind != sqllex.Ident || toks[1].Kind != sqllex.Ident {
		return "", "", false
	}
	cmd = strings.ToUpper(q[toks[0].Start:toks[0].End]) + " " + strings.ToUpper(q[toks[1].Start:toks[1].End])
	rest, suffix := toks[2:], ""
	if n := len(rest); cmd == "SHOW DRIFT" && n >= 2 && rest[n-2].Kind == sqllex.Ident && rest[n-1].Kind == sqllex.Ident &&
		strings.EqualFold(q[rest[n-2].Start:rest[n-2].End], "with") && strings.EqualFold(q[rest[n-1].Start:rest[n-1].End], "checksum") {
		// SHOW DRIFT [table] WITH CHECKSUM: the options come back at the argument's end.
		rest, suffix = rest[:n-2], withChecksum
	}
	if len(rest) > 0 {
		// One argument: a number or a (qualified) name, written without spaces.
		for i, t := range rest {
			switch {
			case t.Kind == sqllex.Ident || t.Kind == sqllex.QIdent || t.Kind == sqllex.Number:
			case t.Kind == sqllex.Punct && q[t.Start] == '.':
			default:
				return "", "", false
			}
			if i > 0 && rest[i-1].End != t.Start {
				return "", "", false
			}
		}
		arg = q[rest[0].Start:rest[len(rest)-1].End]
	}
	switch cmd {
	case "SHOW SHARDS", "SHOW PLACEMENTS":
		return cmd, arg, true
	case "SHOW DRIFT":
		return cmd, arg + suffix, true
	case "SHOW NODES", "SHOW REPAIRS", "SHOW POOLS", "SHOW STATS", "SHOW VERSION", "SHOW TRANSACTIONS", "RECOVER TRANSACTIONS":
		return cmd, arg, arg == ""
	case "REPAIR SHARD":
		return cmd, arg, arg != ""
	}
	return "", "", false
}

// withChecksum is how adminCommand gives SHOW DRIFT's option back, after the argument.
const withChecksum = " WITH CHECKSUM"

// adminStart reports whether q's first word, after whitespace and comments, is SHOW,
// REPAIR or RECOVER: a cheap test for every statement before the tokens of a few are looked at.
func adminStart(q string) bool {
	for i := 0; i < len(q); {
		switch c := q[i]; {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v':
			i++
		case strings.HasPrefix(q[i:], "--"):
			for i < len(q) && q[i] != '\n' && q[i] != '\r' {
				i++
			}
		case strings.HasPrefix(q[i:], "/*"):
			depth := 0
			for i < len(q) {
				if strings.HasPrefix(q[i:], "/*") {
					depth++
					i += 2
				} else if strings.HasPrefix(q[i:], "*/") {
					depth--
					i += 2
					if depth == 0 {
						break
					}
				} else {
					i++
				}
			}
		default:
			w := q[i:]
			return len(w) >= 4 && strings.EqualFold(w[:4], "show") || len(w) >= 6 && strings.EqualFold(w[:6], "repair") ||
				len(w) >= 7 && strings.EqualFold(w[:7], "recover")
		}
	}
	return false
}
