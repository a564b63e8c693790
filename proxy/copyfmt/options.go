package copyfmt

import (
	"fmt"
	"strconv"
	"strings"
)

// SQLSTATEs of the errors this package reports (PostgreSQL's errcodes.txt).
const (
	CodeSyntaxError              = "42601" // ERRCODE_SYNTAX_ERROR
	CodeInvalidParameterValue    = "22023" // ERRCODE_INVALID_PARAMETER_VALUE
	CodeFeatureNotSupported      = "0A000" // ERRCODE_FEATURE_NOT_SUPPORTED
	CodeBadCopyFileFormat        = "22P04" // ERRCODE_BAD_COPY_FILE_FORMAT
	CodeCharacterNotInRepertoire = "22021" // ERRCODE_CHARACTER_NOT_IN_REPERTOIRE
	CodeUndefinedColumn          = "42703" // ERRCODE_UNDEFINED_COLUMN
	CodeDuplicateColumn          = "42701" // ERRCODE_DUPLICATE_COLUMN
	CodeInvalidColumnReference   = "42P10" // ERRCODE_INVALID_COLUMN_REFERENCE
)

// OptionError is an invalid COPY option list, reported with PostgreSQL's message and
// SQLSTATE.
type OptionError struct {
	Code string // SQLSTATE
	Msg  string
}

func (e *OptionError) Error() string { return e.Msg }

func optErr(code, format string, args ...any) *OptionError {
	return &OptionError{Code: code, Msg: fmt.Sprintf(format, args...)}
}

// Format is COPY's data format.
type Format uint8

// Formats. Binary is recognised by ParseOptions (so that its option checks run) but not
// supported: Validate rejects it.
const (
	Text Format = iota
	CSV
	Binary
)

func (f Format) String() string {
	switch f {
	case Text:
		return "text"
	case CSV:
		return "csv"
	case Binary:
		return "binary"
	}
	return "format(" + strconv.Itoa(int(f)) + ")"
}

// ArgKind is the kind of an option's argument, as PostgreSQL's grammar builds it
// (copy_generic_opt_arg and the legacy COPY syntax).
type ArgKind uint8

// Argument kinds.
const (
	ArgNone   ArgKind = iota // no argument: DefElem.arg is NULL (e.g. HEADER, FREEZE)
	ArgString                // String node: a quoted string, an identifier or a keyword
	ArgNumber                // Integer or Float node
	ArgList                  // List of String nodes: (col, ...)
	ArgStar                  // A_Star: *
)

// Option is one element of COPY's option list, converted from a pg_query DefElem:
//
//   - Name is DefElem.defname (lower case, e.g. "format", "force_not_null").
//   - String node: Kind ArgString, Value its text. A Boolean node (the legacy CSV HEADER and
//     FREEZE keywords) is Kind ArgString with Value "true" or "false", as defGetString
//     renders it.
//   - Integer node: Kind ArgNumber, Value the decimal integer; Float node: Kind ArgNumber,
//     Value the literal's text.
//   - List: Kind ArgList, List the String items; A_Star: Kind ArgStar.
//   - no argument: Kind ArgNone.
type Option struct {
	Name  string
	Kind  ArgKind
	Value string
	List  []string
}

// Opt returns an option with a string argument.
func Opt(name, value string) Option { return Option{Name: name, Kind: ArgString, Value: value} }

// Options are COPY FROM's format options with every default filled in (see ParseOptions).
type Options struct {
	Format    Format
	Delimiter byte   // default tab (text) or comma (CSV)
	Null      string // default `\N` (text) or "" (CSV)
	Quote     byte   // CSV only; default '"'
	Escape    byte   // CSV only; default Quote

	// Header skips the first line of the data. HeaderMatch (HEADER MATCH) also asks that
	// the line's fields equal the column names: the Splitter keeps the line (HeaderLine)
	// and MatchHeader checks it.
	Header      bool
	HeaderMatch bool

	// ForceNotNull and ForceNull are the CSV FORCE_NOT_NULL and FORCE_NULL column lists.
	// BindColumns maps them to field positions; Field applies them.
	ForceNotNull []string
	ForceNull    []string

	// Encoding is the ENCODING option, canonical ("UTF8" or "SQL_ASCII"), or "" when not
	// given (the client's client_encoding applies).
	Encoding string

	// ClientEncoding is the session's client_encoding ("UTF8" or "SQL_ASCII"), which the
	// data is in when Encoding is not given. ParseOptions leaves it empty: the caller sets
	// it. The Splitter verifies the data in the encoding that applies, as COPY does (UTF8:
	// valid UTF-8 without NUL bytes; SQL_ASCII: no NUL bytes); when neither is set the data
	// is not verified (the shards will).
	ClientEncoding string

	// Freeze is the FREEZE option. It does not change parsing; ShardOptions forwards it
	// when true.
	Freeze bool

	// Bound by BindColumns: per-field FORCE_NOT_NULL / FORCE_NULL flags.
	forceNotNull []bool
	forceNull    []bool
}

// NewOptions returns the default options of a format (text or CSV).
func NewOptions(f Format) *Options {
	o := &Options{Format: f, Delimiter: '\t', Null: `\N`}
	if f == CSV {
		o.Delimiter, o.Null, o.Quote, o.Escape = ',', "", '"', '"'
	}
	return o
}

// ParseOptions builds Options from COPY FROM's option list with PostgreSQL 15's
// ProcessCopyOptions: defaults, conflicts and every consistency check, in PostgreSQL's order
// and with its messages and SQLSTATEs (errors are *OptionError). Binary format, and
// encodings other than UTF8 and SQL_ASCII, are then rejected as unsupported.
//
// It runs in ProcessCopyOptions' two passes: collect each option once (rawOptions.add,
// which reports conflicts and malformed arguments), then fill in the defaults and check
// the combination (rawOptions.resolve).
func ParseOptions(opts []Option) (*Options, error) {
	var r rawOptions
	for _, opt := range opts {
		if err := r.add(opt); err != nil {
			return nil, err
		}
	}
	o, err := r.resolve()
	if err != nil {
		return nil, err
	}
	if err := o.Validate(); err != nil {
		return nil, err
	}
	return o, nil
}

// rawOptions is COPY's option list as given, before defaults and consistency checks. The
// *Set flags and nil pointers mean "not given", which the conflict checks and the defaults
// need to tell apart from an empty value.
type rawOptions struct {
	formatSet, freezeSet, headerSet bool
	csvMode, binary                 bool
	delim, null, quote, escape      *string
	forceQuote, forceQuoteAll       bool
	forceNotNull, forceNull         []string
	forceNotNullSet, forceNullSet   bool
	encoding                        string
	encodingSet                     bool
	freeze, header, headerMatch     bool
}

// add records one option, failing on a repeated option (conflicting()), a malformed
// argument or an unknown name.
func (r *rawOptions) add(opt Option) error {
	switch opt.Name {
	case "format":
		return r.addFormat(opt)
	case "freeze":
		if r.freezeSet {
			return conflicting()
		}
		r.freezeSet = true
		b, err := defGetBoolean(opt)
		if err != nil {
			return err
		}
		r.freeze = b
	case "delimiter", "null", "quote", "escape":
		return r.addString(opt)
	case "header":
		if r.headerSet {
			return conflicting()
		}
		r.headerSet = true
		h, m, err := defGetCopyHeaderChoice(opt)
		if err != nil {
			return err
		}
		r.header, r.headerMatch = h, m
	case "force_quote":
		if r.forceQuote || r.forceQuoteAll {
			return conflicting()
		}
		switch opt.Kind {
		case ArgStar:
			r.forceQuoteAll = true
		case ArgList:
			r.forceQuote = true
		default:
			return listRequired(opt.Name)
		}
	case "force_not_null", "force_null":
		set, list := &r.forceNotNullSet, &r.forceNotNull
		if opt.Name == "force_null" {
			set, list = &r.forceNullSet, &r.forceNull
		}
		if *set {
			return conflicting()
		}
		if opt.Kind != ArgList {
			return listRequired(opt.Name)
		}
		*set = true
		*list = append([]string(nil), opt.List...)
	case "encoding":
		return r.addEncoding(opt)
	default:
		return optErr(CodeSyntaxError, "option \"%s\" not recognized", opt.Name)
	}
	return nil
}

// addFormat records FORMAT text, csv or binary.
func (r *rawOptions) addFormat(opt Option) error {
	fmtName, err := defGetString(opt)
	if err != nil {
		return err
	}
	if r.formatSet {
		return conflicting()
	}
	r.formatSet = true
	switch fmtName {
	case "text":
	case "csv":
		r.csvMode = true
	case "binary":
		r.binary = true
	default:
		return optErr(CodeInvalidParameterValue, "COPY format \"%s\" not recognized", fmtName)
	}
	return nil
}

// addString records DELIMITER, NULL, QUOTE or ESCAPE, whose arguments are strings checked
// later (resolve), once the format is known.
func (r *rawOptions) addString(opt Option) error {
	var ptr **string
	switch opt.Name {
	case "delimiter":
		ptr = &r.delim
	case "null":
		ptr = &r.null
	case "quote":
		ptr = &r.quote
	default:
		ptr = &r.escape
	}
	if *ptr != nil {
		return conflicting()
	}
	v, err := defGetString(opt)
	if err != nil {
		return err
	}
	*ptr = &v
	return nil
}

// addEncoding records ENCODING, canonicalised by encodingName.
func (r *rawOptions) addEncoding(opt Option) error {
	if r.encodingSet {
		return conflicting()
	}
	v, err := defGetString(opt)
	if err != nil {
		return err
	}
	enc, ok := encodingName(v)
	if !ok {
		return optErr(CodeInvalidParameterValue, "argument to option \"%s\" must be a valid encoding name", opt.Name)
	}
	r.encodingSet, r.encoding = true, enc
	return nil
}

// resolve is ProcessCopyOptions' second pass: the format's defaults for what was not
// given, then the consistency checks (check), then the Options.
func (r *rawOptions) resolve() (*Options, error) {
	if r.binary && r.delim != nil {
		return nil, optErr(CodeSyntaxError, "cannot specify DELIMITER in BINARY mode")
	}
	if r.binary && r.null != nil {
		return nil, optErr(CodeSyntaxError, "cannot specify NULL in BINARY mode")
	}
	d, n := "\t", `\N`
	if r.csvMode {
		d, n = ",", ""
	}
	if r.delim != nil {
		d = *r.delim
	}
	if r.null != nil {
		n = *r.null
	}
	var q, e string
	if r.csvMode {
		q = `"`
		if r.quote != nil {
			q = *r.quote
		}
		e = q
		if r.escape != nil {
			e = *r.escape
		}
	}
	if err := r.check(d, n, q, e); err != nil {
		return nil, err
	}

	o := &Options{Freeze: r.freeze, Header: r.header, HeaderMatch: r.headerMatch}
	switch {
	case r.binary:
		o.Format = Binary
	case r.csvMode:
		o.Format = CSV
		o.Quote, o.Escape = q[0], e[0]
	default:
		o.Format = Text
	}
	o.Delimiter, o.Null = d[0], n
	o.ForceNotNull, o.ForceNull = r.forceNotNull, r.forceNull
	o.Encoding = r.encoding
	return o, nil
}

// check runs ProcessCopyOptions' consistency checks, in its order, on the options with
// their defaults filled in: delimiter d, NULL string n, and in CSV mode quote q and escape
// e (both "" otherwise).
func (r *rawOptions) check(d, n, q, e string) error {
	csvMode := r.csvMode
	if len(d) != 1 {
		return optErr(CodeFeatureNotSupported, "COPY delimiter must be a single one-byte character")
	}
	if d[0] == '\r' || d[0] == '\n' {
		return optErr(CodeInvalidParameterValue, "COPY delimiter cannot be newline or carriage return")
	}
	if strings.ContainsAny(n, "\r\n") {
		return optErr(CodeInvalidParameterValue, "COPY null representation cannot use newline or carriage return")
	}
	if !csvMode && strings.IndexByte("\\.abcdefghijklmnopqrstuvwxyz0123456789", d[0]) >= 0 {
		return optErr(CodeInvalidParameterValue, "COPY delimiter cannot be \"%s\"", d)
	}
	if r.binary && r.header {
		return optErr(CodeFeatureNotSupported, "cannot specify HEADER in BINARY mode")
	}
	if !csvMode && r.quote != nil {
		return optErr(CodeFeatureNotSupported, "COPY quote available only in CSV mode")
	}
	if csvMode && len(q) != 1 {
		return optErr(CodeFeatureNotSupported, "COPY quote must be a single one-byte character")
	}
	if csvMode && d[0] == q[0] {
		return optErr(CodeInvalidParameterValue, "COPY delimiter and quote must be different")
	}
	if !csvMode && r.escape != nil {
		return optErr(CodeFeatureNotSupported, "COPY escape available only in CSV mode")
	}
	if csvMode && len(e) != 1 {
		return optErr(CodeFeatureNotSupported, "COPY escape must be a single one-byte character")
	}
	if !csvMode && (r.forceQuote || r.forceQuoteAll) {
		return optErr(CodeFeatureNotSupported, "COPY force quote available only in CSV mode")
	}
	if r.forceQuote || r.forceQuoteAll {
		return optErr(CodeFeatureNotSupported, "COPY force quote only available using COPY TO")
	}
	if !csvMode && r.forceNotNull != nil {
		return optErr(CodeFeatureNotSupported, "COPY force not null available only in CSV mode")
	}
	if !csvMode && r.forceNull != nil {
		return optErr(CodeFeatureNotSupported, "COPY force null available only in CSV mode")
	}
	if strings.IndexByte(n, d[0]) >= 0 {
		return optErr(CodeFeatureNotSupported, "COPY delimiter must not appear in the NULL specification")
	}
	if csvMode && strings.IndexByte(n, q[0]) >= 0 {
		return optErr(CodeFeatureNotSupported, "CSV quote character must not appear in the NULL specification")
	}
	return nil
}

// Validate checks that o is a consistent set of options that this package supports: text
// or CSV (binary is rejected), the delimiter, NULL string, quote and escape rules of
// ProcessCopyOptions, and UTF8 or SQL_ASCII encoding. ParseOptions calls it; call it for
// Options built by hand.
func (o *Options) Validate() error {
	switch o.Format {
	case Text, CSV:
	case Binary:
		return optErr(CodeFeatureNotSupported, "COPY FORMAT binary is not supported for distributed tables")
	default:
		return optErr(CodeInvalidParameterValue, "COPY format \"%s\" not recognized", o.Format)
	}
	csvMode := o.Format == CSV
	if o.Delimiter == '\r' || o.Delimiter == '\n' {
		return optErr(CodeInvalidParameterValue, "COPY delimiter cannot be newline or carriage return")
	}
	if strings.ContainsAny(o.Null, "\r\n") {
		return optErr(CodeInvalidParameterValue, "COPY null representation cannot use newline or carriage return")
	}
	if !csvMode && strings.IndexByte("\\.abcdefghijklmnopqrstuvwxyz0123456789", o.Delimiter) >= 0 {
		return optErr(CodeInvalidParameterValue, "COPY delimiter cannot be \"%s\"", string(o.Delimiter))
	}
	if csvMode && o.Delimiter == o.Quote {
		return optErr(CodeInvalidParameterValue, "COPY delimiter and quote must be different")
	}
	if !csvMode && o.ForceNotNull != nil {
		return optErr(CodeFeatureNotSupported, "COPY force not null available only in CSV mode")
	}
	if !csvMode && o.ForceNull != nil {
		return optErr(CodeFeatureNotSupported, "COPY force null available only in CSV mode")
	}
	if strings.IndexByte(o.Null, o.Delimiter) >= 0 {
		return optErr(CodeFeatureNotSupported, "COPY delimiter must not appear in the NULL specification")
	}
	if csvMode && strings.IndexByte(o.Null, o.Quote) >= 0 {
		return optErr(CodeFeatureNotSupported, "CSV quote character must not appear in the NULL specification")
	}
	if o.HeaderMatch && !o.Header {
		return optErr(CodeInvalidParameterValue, "COPY HEADER MATCH requires HEADER")
	}
	switch o.Encoding {
	case "", "UTF8", "SQL_ASCII":
	default:
		return optErr(CodeFeatureNotSupported, "COPY ENCODING \"%s\" is not supported for distributed tables", o.Encoding)
	}
	switch o.ClientEncoding {
	case "", "UTF8", "SQL_ASCII":
	default:
		if o.Encoding == "" {
			return optErr(CodeFeatureNotSupported, "COPY with client_encoding \"%s\" is not supported for distributed tables", o.ClientEncoding)
		}
	}
	return nil
}

// BindColumns resolves FORCE_NOT_NULL and FORCE_NULL as BeginCopyFrom does: every name
// must be a column of the table (tableColumns; nil means the same as columns), listed at
// most once, and one of the COPY's columns (columns: the COPY's column list, or all the
// table's columns when it has none). relation names the table in the messages. Field then
// applies the lists to field i = position in columns. Call it once, before sharing o.
func (o *Options) BindColumns(columns, tableColumns []string, relation string) error {
	if tableColumns == nil {
		tableColumns = columns
	}
	bind := func(list []string, option string) ([]bool, error) {
		if len(list) == 0 {
			return nil, nil
		}
		seen := make(map[string]bool, len(list))
		for _, name := range list {
			if indexOf(tableColumns, name) < 0 {
				return nil, &OptionError{Code: CodeUndefinedColumn,
					Msg: fmt.Sprintf("column \"%s\" of relation \"%s\" does not exist", name, relation)}
			}
			if seen[name] {
				return nil, &OptionError{Code: CodeDuplicateColumn,
					Msg: fmt.Sprintf("column \"%s\" specified more than once", name)}
			}
			seen[name] = true
		}
		flags := make([]bool, len(columns))
		for _, name := range list {
			i := indexOf(columns, name)
			if i < 0 {
				return nil, &OptionError{Code: CodeInvalidColumnReference,
					Msg: fmt.Sprintf("%s column \"%s\" not referenced by COPY", option, name)}
			}
			flags[i] = true
		}
		return flags, nil
	}
	nn, err := bind(o.ForceNotNull, "FORCE_NOT_NULL")
	if err != nil {
		return err
	}
	fn, err := bind(o.ForceNull, "FORCE_NULL")
	if err != nil {
		return err
	}
	o.forceNotNull, o.forceNull = nn, fn
	return nil
}

func indexOf(list []string, s string) int {
	for i, v := range list {
		if v == s {
			return i
		}
	}
	return -1
}

// ShardOptions renders the options for the COPY ... FROM STDIN sent to a shard, e.g.
// `(FORMAT csv, DELIMITER ',', NULL ”, QUOTE '"', ESCAPE '"')`: every format option
// spelled out, HEADER off (the proxy strips the header line), FORCE_NOT_NULL / FORCE_NULL,
// ENCODING and FREEZE kept. Strings are SQL literals (E” when they hold a backslash),
// column names quoted identifiers, so the text is valid whatever the values.
func (o *Options) ShardOptions() string {
	var b strings.Builder
	b.WriteString("(FORMAT ")
	b.WriteString(o.Format.String())
	b.WriteString(", DELIMITER ")
	b.WriteString(quoteLiteral(string(o.Delimiter)))
	b.WriteString(", NULL ")
	b.WriteString(quoteLiteral(o.Null))
	if o.Format == CSV {
		b.WriteString(", QUOTE ")
		b.WriteString(quoteLiteral(string(o.Quote)))
		b.WriteString(", ESCAPE ")
		b.WriteString(quoteLiteral(string(o.Escape)))
		for _, f := range []struct {
			name string
			cols []string
		}{{"FORCE_NOT_NULL", o.ForceNotNull}, {"FORCE_NULL", o.ForceNull}} {
			if len(f.cols) == 0 {
				continue
			}
			b.WriteString(", ")
			b.WriteString(f.name)
			b.WriteString(" (")
			for i, c := range f.cols {
				if i > 0 {
					b.WriteString(", ")
				}
				b.WriteString(quoteIdent(c))
			}
			b.WriteString(")")
		}
	}
	if o.Encoding != "" {
		b.WriteString(", ENCODING ")
		b.WriteString(quoteLiteral(o.Encoding))
	}
	if o.Freeze {
		b.WriteString(", FREEZE true")
	}
	b.WriteString(")")
	return b.String()
}

// quoteLiteral renders s as an SQL string literal that means s whatever
// standard_conforming_strings says: E'...' with backslashes doubled when s holds one.
func quoteLiteral(s string) string {
	q := strings.ReplaceAll(s, "'", "''")
	if strings.IndexByte(s, '\\') >= 0 {
		return "E'" + strings.ReplaceAll(q, `\`, `\\`) + "'"
	}
	return "'" + q + "'"
}

func quoteIdent(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }

func conflicting() error {
	return optErr(CodeSyntaxError, "conflicting or redundant options")
}

func listRequired(name string) error {
	return optErr(CodeInvalidParameterValue, "argument to option \"%s\" must be a list of column names", name)
}

// defGetString is PostgreSQL's defGetString.
func defGetString(opt Option) (string, error) {
	switch opt.Kind {
	case ArgNone:
		return "", optErr(CodeSyntaxError, "%s requires a parameter", opt.Name)
	case ArgList:
		return strings.Join(opt.List, "."), nil
	case ArgStar:
		return "*", nil
	}
	return opt.Value, nil
}

// defGetBoolean is PostgreSQL's defGetBoolean.
func defGetBoolean(opt Option) (bool, error) {
	if opt.Kind == ArgNone {
		return true, nil
	}
	if b, ok := boolArg(opt); ok {
		return b, nil
	}
	return false, optErr(CodeSyntaxError, "%s requires a Boolean value", opt.Name)
}

func boolArg(opt Option) (value, ok bool) {
	if opt.Kind == ArgNumber {
		switch opt.Value {
		case "0":
			return false, true
		case "1":
			return true, true
		}
		return false, false
	}
	s, _ := defGetString(opt)
	switch strings.ToLower(s) {
	case "true", "on":
		return true, true
	case "false", "off":
		return false, true
	}
	return false, false
}

// defGetCopyHeaderChoice is PostgreSQL 15's: a Boolean or "match".
func defGetCopyHeaderChoice(opt Option) (header, match bool, err error) {
	if opt.Kind == ArgNone {
		return true, false, nil
	}
	if b, ok := boolArg(opt); ok {
		return b, false, nil
	}
	if opt.Kind != ArgNumber {
		if s, _ := defGetString(opt); strings.EqualFold(s, "match") {
			return true, true, nil
		}
	}
	return false, false, optErr(CodeSyntaxError, "%s requires a Boolean value or \"match\"", opt.Name)
}

// encodingName maps an encoding name as pg_char_to_encoding accepts it to the canonical
// name of the encodings this package supports ("UTF8", "SQL_ASCII"), or to the upper-cased
// name of another valid encoding (which Validate rejects). ok is false for a name that is
// no encoding at all.
func encodingName(name string) (canonical string, ok bool) {
	var b strings.Builder
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
			b.WriteByte(c)
		case c >= 'A' && c <= 'Z':
			b.WriteByte(c + 'a' - 'A')
		}
	}
	clean := b.String()
	switch clean {
	case "utf8", "unicode":
		return "UTF8", true
	case "sqlascii":
		return "SQL_ASCII", true
	}
	if otherEncodings[clean] {
		return strings.ToUpper(name), true
	}
	return "", false
}

// otherEncodings are the remaining names of PostgreSQL's pg_encname_tbl, cleaned as
// clean_encoding_name does (lower case, letters and digits only).
var otherEncodings = map[string]bool{}

func init() {
	for _, n := range strings.Fields(`abc alt big5 euccn eucjis2004 eucjp euckr euctw gb18030
		gbk iso88591 iso885910 iso885913 iso885914 iso885915 iso885916 iso88592 iso88593
		iso88594 iso88595 iso88596 iso88597 iso88598 iso88599 johab koi8 koi8r koi8u latin1
		latin10 latin2 latin3 latin4 latin5 latin6 latin7 latin8 latin9 mskanji muleinternal
		shiftjis shiftjis2004 sjis tcvn tcvn5712 uhc vscii win win1250 win1251 win1252 win1253 win1254
		win1255 win1256 win1257 win1258 win866 win874 win932 win936 win949 win950 windows1250
		windows1251 windows1252 windows1253 windows1254 windows1255 windows1256 windows1257
		windows1258 windows866 windows874 windows932 windows936 windows949 windows950`) {
		otherEncodings[n] = true
	}
}
