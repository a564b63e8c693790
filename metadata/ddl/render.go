package ddl

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/pgshard/pgshard/router/sqllex"
)

// MaxNameLen is the longest identifier PostgreSQL keeps, in bytes (NAMEDATALEN-1).
const MaxNameLen = 63

// NameTooLongError reports a name that cannot take a shard suffix within MaxNameLen bytes.
type NameTooLongError struct {
	Name string // the name before suffixing
}

func (e *NameTooLongError) Error() string {
	return `shard name too long to extend: "` + e.Name + `"`
}

// ShardName returns the shard table's name "name_<shardid>" (not quoted, not qualified), or a
// *NameTooLongError (`shard name too long to extend: "<name>"`) if it exceeds 63 bytes. The
// same suffixing names a shard's constraints and indexes.
func ShardName(name string, shardID int64) (string, error) {
	s := name + "_" + strconv.FormatInt(shardID, 10)
	if len(s) > MaxNameLen {
		return "", &NameTooLongError{Name: name}
	}
	return s, nil
}

// quoteIdent quotes a name by PostgreSQL's quote_ident rules except the keyword check, which
// is moot for the names it is used on: a shard suffix (_ and digits) makes any name a
// non-keyword, since no keyword contains a digit.
func quoteIdent(s string) string {
	safe := s != "" && (s[0] >= 'a' && s[0] <= 'z' || s[0] == '_')
	for i := 0; safe && i < len(s); i++ {
		c := s[i]
		safe = c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_'
	}
	if safe {
		return s
	}
	return `"` + strings.ReplaceAll(s, `"`, `""`) + `"`
}

// quotedShardName is the quoted, suffixed form of name.
func quotedShardName(name string, shardID int64) (string, error) {
	s, err := ShardName(name, shardID)
	if err != nil {
		return "", err
	}
	return quoteIdent(s), nil
}

// QualifiedShardName is the quoted, schema-qualified name of shard shardID.
func (t *Table) QualifiedShardName(shardID int64) (string, error) {
	s, err := quotedShardName(t.Name, shardID)
	if err != nil {
		return "", err
	}
	return t.QuotedSchema + "." + s, nil
}

// DropCommand returns "DROP TABLE IF EXISTS <qualified shard name>".
func (t *Table) DropCommand(shardID int64) (string, error) {
	q, err := t.QualifiedShardName(shardID)
	if err != nil {
		return "", err
	}
	return "DROP TABLE IF EXISTS " + q, nil
}

var storageNames = map[byte]string{'p': "PLAIN", 'e': "EXTERNAL", 'm': "MAIN", 'x': "EXTENDED"}

var compressionNames = map[byte]string{'p': "pglz", 'l': "lz4"}

// CreateCommands returns the statements that create shard shardID on a worker, in order,
// each a separate SQL string: the schema where it is missing (only for schemas other than
// public, ensureSchema), the types and checks of objectCommands (only for tables that need them), CREATE TABLE with the columns and CHECK constraints, NOT VALID CHECK constraints,
// column options, PRIMARY KEY / UNIQUE / EXCLUDE constraints, the other indexes, CLUSTER ON
// and REPLICA IDENTITY, then the owner, privileges and comments (ownershipCommands). Run
// them in one transaction, as the table's owner.
func (t *Table) CreateCommands(shardID int64) ([]string, error) {
	shard, err := t.QualifiedShardName(shardID)
	if err != nil {
		return nil, err
	}
	var cmds []string
	if t.Schema != "public" {
		// Not CREATE SCHEMA IF NOT EXISTS, which needs CREATE on the database even
		// when the schema exists (the owner, who runs these, often lacks it) and fails
		// with a unique violation when it loses a race.
		cmds = append(cmds, ensureSchema(t.Schema, t.QuotedSchema, t.schemaGrants()...))
	}
	cmds = append(cmds, t.collationCommands()...)
	cmds = append(cmds, t.objectCommands()...)
	create, err := t.createTable(shard)
	if err != nil {
		return nil, err
	}
	cmds = append(cmds, create)

	alter := "ALTER TABLE ONLY " + shard + " "
	for _, ck := range t.Checks {
		if !ck.Validated {
			// NOT VALID in CREATE TABLE is ignored (the check is marked valid), so such
			// constraints are added afterwards. Def ends with NOT VALID.
			cmds = append(cmds, alter+"ADD CONSTRAINT "+ck.QuotedName+" "+ck.Def)
		}
	}
	if opts := t.columnOptions(); len(opts) > 0 {
		cmds = append(cmds, alter+strings.Join(opts, ", "))
	}

	var clustered, replident string // quoted shard index names
	for _, c := range t.Constraints {
		name, err := quotedShardName(c.Name, shardID)
		if err != nil {
			return nil, err
		}
		cmds = append(cmds, alter+"ADD CONSTRAINT "+name+" "+c.Def)
		if c.Clustered {
			clustered = name
		}
		if c.ReplicaIdentity {
			replident = name
		}
	}
	for _, ix := range t.Indexes {
		name, err := quotedShardName(ix.Name, shardID)
		if err != nil {
			return nil, err
		}
		var b strings.Builder
		b.WriteString("CREATE ")
		if ix.Unique {
			b.WriteString("UNIQUE ")
		}
		b.WriteString("INDEX " + name + " ON ")
		if ix.Only {
			b.WriteString("ONLY ")
		}
		b.WriteString(shard + ix.Body)
		cmds = append(cmds, b.String())
		if ix.Clustered {
			clustered = name
		}
		if ix.ReplicaIdentity {
			replident = name
		}
	}
	if clustered != "" {
		cmds = append(cmds, "ALTER TABLE "+shard+" CLUSTER ON "+clustered)
	}
	switch t.ReplicaIdentity {
	case 'f':
		cmds = append(cmds, alter+"REPLICA IDENTITY FULL")
	case 'n':
		cmds = append(cmds, alter+"REPLICA IDENTITY NOTHING")
	case 'i':
		if replident != "" {
			cmds = append(cmds, alter+"REPLICA IDENTITY USING INDEX "+replident)
		}
	}
	more, err := t.ownershipCommands(shard, shardID)
	if err != nil {
		return nil, err
	}
	cmds = append(cmds, more...)
	sec, err := t.securityCommands(shard) // objects.go: after the owner's commands, triggers last
	if err != nil {
		return nil, err
	}
	cmds = append(cmds, sec...)
	// Load deparsed the definitions with standard_conforming_strings on; the commands
	// run in sessions that may have it off.
	for i, c := range cmds {
		cmds[i] = sqllex.PortableText(c)
	}
	return cmds, nil
}

// ownershipCommands are the commands that give the shard its table's owner, privileges and
// comments: ALTER TABLE ... OWNER TO (a no-op when the session creating the shard is the
// owner's), the table's ACL (when it is not the default: REVOKE ALL from PUBLIC and the
// owner, then a GRANT per grantee; grants to roles other than PUBLIC and the owner in one
// DO block that skips the roles missing on the worker), the columns' ACLs, and COMMENT ON
// the table, its columns, constraints and indexes.
func (t *Table) ownershipCommands(shard string, shardID int64) ([]string, error) {
	var cmds []string
	if t.Owner != "" {
		cmds = append(cmds, "ALTER TABLE "+shard+" OWNER TO "+t.Owner)
	}
	on := " ON TABLE " + shard + " "
	// Privileges the worker gave the new shard (its ALTER DEFAULT PRIVILEGES) go first:
	// every grantee's are revoked where the shard's ACL is not the default. A table with
	// the default ACL then gets its owner's privileges back, which is what the default
	// gives.
	if t.Owner != "" {
		reset := "BEGIN\nIF (SELECT c.relacl FROM pg_catalog.pg_class c WHERE c.oid OPERATOR(pg_catalog.=) " + literal(shard) + "::pg_catalog.regclass) IS NOT NULL THEN\n" +
			"FOR r IN SELECT DISTINCT CASE WHEN x.grantee OPERATOR(pg_catalog.=) 0 THEN 'PUBLIC' ELSE pg_catalog.quote_ident(pg_catalog.pg_get_userbyid(x.grantee)) END AS grantee\n" +
			"FROM pg_catalog.pg_class c, pg_catalog.aclexplode(c.relacl) x WHERE c.oid OPERATOR(pg_catalog.=) " + literal(shard) + "::pg_catalog.regclass LOOP\n" +
			"EXECUTE " + literal("REVOKE ALL"+on+"FROM ") + " OPERATOR(pg_catalog.||) r.grantee;\nEND LOOP;\n"
		if t.ACL == nil {
			reset += "GRANT ALL" + on + "TO " + t.Owner + ";\n"
		}
		cmds = append(cmds, doBlock("DECLARE r record;\n"+reset+"END IF;\nEND"))
	}
	if t.ACL != nil {
		cmds = append(cmds, "REVOKE ALL"+on+"FROM PUBLIC")
		if t.Owner != "" {
			cmds = append(cmds, "REVOKE ALL"+on+"FROM "+t.Owner)
		}
	}
	// A grantee role missing on the worker is left out there: it could not use the shard
	// anyway (pgshard connects to the workers as the client's role), and its absence must
	// not keep the shard from being created or repaired.
	var guarded []string
	grant := func(g Grant, quotedColumn string) {
		cmd := g.command(quotedColumn, on)
		if g.Role == "" || g.Grantee == t.Owner {
			cmds = append(cmds, cmd)
			return
		}
		guarded = append(guarded, "IF EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname OPERATOR(pg_catalog.=) "+
			literal(g.Role)+") THEN\n"+cmd+";\nEND IF;\n")
	}
	for _, g := range t.ACL {
		grant(g, "")
	}
	for _, c := range t.Columns {
		for _, g := range c.ACL {
			grant(g, c.QuotedName)
		}
	}
	if len(guarded) > 0 {
		cmds = append(cmds, doBlock("BEGIN\n"+strings.Join(guarded, "")+"END"))
	}
	if t.Comment != "" {
		cmds = append(cmds, "COMMENT ON TABLE "+shard+" IS "+t.Comment)
	}
	for _, c := range t.Columns {
		if c.Comment != "" {
			cmds = append(cmds, "COMMENT ON COLUMN "+shard+"."+c.QuotedName+" IS "+c.Comment)
		}
	}
	for _, ck := range t.Checks {
		if ck.Comment != "" {
			cmds = append(cmds, "COMMENT ON CONSTRAINT "+ck.QuotedName+" ON "+shard+" IS "+ck.Comment)
		}
	}
	for _, c := range t.Constraints {
		if c.Comment == "" && c.IndexComment == "" {
			continue
		}
		name, err := quotedShardName(c.Name, shardID)
		if err != nil {
			return nil, err
		}
		if c.Comment != "" {
			cmds = append(cmds, "COMMENT ON CONSTRAINT "+name+" ON "+shard+" IS "+c.Comment)
		}
		if c.IndexComment != "" {
			cmds = append(cmds, "COMMENT ON INDEX "+t.QuotedSchema+"."+name+" IS "+c.IndexComment)
		}
	}
	for _, ix := range t.Indexes {
		if ix.Comment == "" {
			continue
		}
		name, err := quotedShardName(ix.Name, shardID)
		if err != nil {
			return nil, err
		}
		cmds = append(cmds, "COMMENT ON INDEX "+t.QuotedSchema+"."+name+" IS "+ix.Comment)
	}
	return cmds, nil
}

// command is the GRANT of g on the table (on is " ON TABLE <shard> "), or on its column
// quotedColumn when that is not "".
// schemaGrants are the GRANTs that give a schema the worker creates for a shard the
// privileges of the coordinator's, each skipped where its role is missing.
func (t *Table) schemaGrants() []string {
	var out []string
	for _, g := range t.SchemaACL {
		cmd := g.command("", " ON SCHEMA "+t.QuotedSchema+" ") + ";\n"
		if g.Role != "" {
			cmd = "IF EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname OPERATOR(pg_catalog.=) " + literal(g.Role) + ") THEN\n" + cmd + "END IF;\n"
		}
		out = append(out, cmd)
	}
	return out
}

func (g Grant) command(quotedColumn, on string) string {
	privs := g.Privileges
	if quotedColumn != "" {
		// Column privileges name the column after each privilege.
		parts := strings.Split(privs, ", ")
		for i, p := range parts {
			parts[i] = p + " (" + quotedColumn + ")"
		}
		privs = strings.Join(parts, ", ")
	}
	cmd := "GRANT " + privs + on + "TO " + g.Grantee
	if g.Grantable {
		cmd += " WITH GRANT OPTION"
	}
	return cmd
}

func (t *Table) createTable(shard string) (string, error) {
	var b strings.Builder
	b.WriteString("CREATE ")
	if t.Unlogged {
		b.WriteString("UNLOGGED ")
	}
	b.WriteString("TABLE " + shard + " (")
	n := 0
	sep := func() {
		if n > 0 {
			b.WriteString(", ")
		}
		n++
	}
	for _, c := range t.Columns {
		if c.QuotedName == "" || c.TypeName == "" {
			return "", fmt.Errorf("ddl: column %q of %s.%s has no name or type", c.Name, t.QuotedSchema, t.QuotedName)
		}
		sep()
		b.WriteString(c.QuotedName + " " + c.TypeName)
		if c.Collation != "" {
			b.WriteString(" COLLATE " + c.Collation)
		}
		switch {
		case c.Generated == 's':
			b.WriteString(" GENERATED ALWAYS AS (" + c.GeneratedExpr + ") STORED")
		case c.Generated != 0:
			return "", fmt.Errorf("ddl: column %s of %s.%s: unsupported generated column kind %q", c.QuotedName, t.QuotedSchema, t.QuotedName, c.Generated)
		case c.HasDefault && c.DefaultOnShard:
			b.WriteString(" DEFAULT " + c.DefaultExpr)
		}
		if c.NotNull {
			b.WriteString(" NOT NULL")
		}
	}
	for _, ck := range t.Checks {
		if ck.Validated {
			sep()
			b.WriteString("CONSTRAINT " + ck.QuotedName + " " + ck.Def)
		}
	}
	b.WriteString(")")
	if t.AccessMethod != "" {
		b.WriteString(" USING " + t.AccessMethod)
	}
	if len(t.Options) > 0 {
		b.WriteString(" WITH (" + strings.Join(t.Options, ", ") + ")")
	}
	return b.String(), nil
}

// columnOptions are the ALTER COLUMN subcommands for per-column storage, statistics target
// and compression.
func (t *Table) columnOptions() []string {
	var out []string
	for _, c := range t.Columns {
		alter := "ALTER COLUMN " + c.QuotedName + " "
		if s := storageNames[c.Storage]; s != "" {
			out = append(out, alter+"SET STORAGE "+s)
		}
		if c.Statistics != nil {
			out = append(out, alter+"SET STATISTICS "+strconv.Itoa(*c.Statistics))
		}
		if s := compressionNames[c.Compression]; s != "" {
			out = append(out, alter+"SET COMPRESSION "+s)
		}
	}
	return out
}

// parseIndexDef splits pg_get_indexdef's output, which has the fixed form
//
//	CREATE [UNIQUE] INDEX <name> ON [ONLY] <schema>.<table> USING ...
//
// with quote_ident-quoted names, checking that the names are the expected quoted index name
// and qualified table name. body is the text from " USING" on.
func parseIndexDef(def, quotedIndex, qualifiedTable string) (unique, only bool, body string, err error) {
	bad := func(what string) error {
		return fmt.Errorf("unexpected index definition %q: %s", def, what)
	}
	rest, ok := strings.CutPrefix(def, "CREATE ")
	if !ok {
		return false, false, "", bad("no CREATE")
	}
	rest, unique = strings.CutPrefix(rest, "UNIQUE ")
	if rest, ok = strings.CutPrefix(rest, "INDEX "); !ok {
		return false, false, "", bad("no INDEX")
	}
	name, rest, err := scanIdent(rest)
	if err != nil {
		return false, false, "", bad(err.Error())
	}
	if name != quotedIndex {
		return false, false, "", bad("index name is not " + quotedIndex)
	}
	if rest, ok = strings.CutPrefix(rest, " ON "); !ok {
		return false, false, "", bad("no ON after the index name")
	}
	rest, only = strings.CutPrefix(rest, "ONLY ")
	schema, rest, err := scanIdent(rest)
	if err != nil {
		return false, false, "", bad(err.Error())
	}
	if rest, ok = strings.CutPrefix(rest, "."); !ok {
		return false, false, "", bad("table name is not qualified")
	}
	table, rest, err := scanIdent(rest)
	if err != nil {
		return false, false, "", bad(err.Error())
	}
	if schema+"."+table != qualifiedTable {
		return false, false, "", bad("table is not " + qualifiedTable)
	}
	if !strings.HasPrefix(rest, " USING ") {
		return false, false, "", bad("no USING after the table name")
	}
	return unique, only, rest, nil
}

// scanIdent scans one identifier as quote_ident writes it at the start of s: a double-quoted
// name (with "" for a quote, and anything else, including spaces and dots, literally) or an
// unquoted one. It returns the identifier as written, quotes included, and the rest of s.
func scanIdent(s string) (ident, rest string, err error) {
	if s == "" {
		return "", "", errors.New("missing identifier")
	}
	if s[0] == '"' {
		for i := 1; i < len(s); i++ {
			if s[i] != '"' {
				continue
			}
			if i+1 < len(s) && s[i+1] == '"' {
				i++
				continue
			}
			if i == 1 {
				return "", "", errors.New("empty quoted identifier")
			}
			return s[:i+1], s[i+1:], nil
		}
		return "", "", errors.New("unterminated quoted identifier")
	}
	i := 0
	for i < len(s) {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '$' || c >= 0x80 {
			i++
			continue
		}
		break
	}
	if i == 0 {
		return "", "", fmt.Errorf("missing identifier at %q", s)
	}
	return s[:i], s[i:], nil
}
