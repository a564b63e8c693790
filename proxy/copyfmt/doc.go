// Package copyfmt splits, reads and extends the data of COPY ... FROM STDIN in PostgreSQL's
// text and CSV formats, following PostgreSQL 15 (src/backend/commands/copy.c and
// copyfromparse.c), so that the proxy can route each row of a client's COPY to the shard
// that owns it and forward the row's bytes unchanged.
//
// # Options
//
// ParseOptions turns COPY's option list into *Options, applying ProcessCopyOptions'
// defaults and checks, in PostgreSQL's order and with its messages and SQLSTATEs
// (*OptionError). The caller converts the CopyStmt's DefElem list from pg_query:
//
//	for _, n := range stmt.Options {
//		d := n.GetDefElem()
//		opt := copyfmt.Option{Name: d.Defname}
//		switch a := d.Arg; {
//		case a == nil: // ArgNone
//		case a.GetString_() != nil:
//			opt.Kind, opt.Value = copyfmt.ArgString, a.GetString_().Sval
//		case a.GetBoolean() != nil:
//			opt.Kind, opt.Value = copyfmt.ArgString, strconv.FormatBool(a.GetBoolean().Boolval)
//		case a.GetInteger() != nil:
//			opt.Kind, opt.Value = copyfmt.ArgNumber, strconv.Itoa(int(a.GetInteger().Ival))
//		case a.GetFloat() != nil:
//			opt.Kind, opt.Value = copyfmt.ArgNumber, a.GetFloat().Fval
//		case a.GetAStar() != nil:
//			opt.Kind = copyfmt.ArgStar
//		case a.GetList() != nil:
//			opt.Kind = copyfmt.ArgList
//			for _, item := range a.GetList().Items {
//				opt.List = append(opt.List, item.GetString_().Sval)
//			}
//		}
//		opts = append(opts, opt)
//	}
//
// BindColumns then resolves FORCE_NOT_NULL and FORCE_NULL against the COPY's columns as
// BeginCopyFrom does, and ShardOptions renders the options for the COPY sent to each shard
// (HEADER off: the proxy strips the header line). Binary format is rejected, and so are
// encodings other than UTF8 and SQL_ASCII (ENCODING, or the session's client_encoding the
// caller puts in ClientEncoding).
//
// # Splitting
//
// A Splitter cuts the client's CopyData stream, whatever its message boundaries, into rows
// exactly where CopyReadLine would: it detects the line ending (\n, \r\n or \r) from the
// first line and then requires it, honours backslash escapes (text) and quotes (CSV),
// recognises the \. end-of-data marker (ignoring what follows, as PostgreSQL does), skips
// the header line, verifies the input's encoding, and counts lines like PostgreSQL's
// "COPY t, line N" context. Rows come with their line terminators: the header line and the
// rows concatenate back to the input up to the end marker. With SetColumns it also checks
// each row's field count (and HEADER MATCH), so that every error PostgreSQL would raise
// before converting field values is raised here, with the same message, SQLSTATE and line.
//
// # Fields
//
// Options.Field, Fields and CheckColumns read a row the way CopyReadAttributesText and
// CopyReadAttributesCSV do: de-escaping, NULL detection on the raw text, FORCE_NOT_NULL and
// FORCE_NULL, and PostgreSQL's errors for a wrong number of fields (*DataError).
// EncodeField and AppendField encode values (as COPY TO does, but never so that a value
// reads back as NULL), so that the proxy can add columns such as evaluated defaults.
//
// # Use
//
//	o, err := copyfmt.ParseOptions(opts)
//	o.ClientEncoding = "UTF8" // the session's client_encoding
//	err = o.BindColumns(copyColumns, tableColumns, relName)
//	sp := copyfmt.NewSplitter(o)
//	sp.SetColumns(copyColumns)
//	// for each CopyData message m, sp.Write(m), then drain sp.Next(); after CopyDone,
//	// drain sp.Finish():
//	for {
//		row, ok, err := sp.Next()
//		if err != nil { ... }     // *DataError with PostgreSQL's message and line
//		if !ok { break }
//		key, null, err := o.Field(row, keyIndex)
//		... forward row to its shard's "COPY t (cols) FROM STDIN " + o.ShardOptions()
//	}
//
// Options is read-only once built (BindColumns aside) and safe for concurrent use; a
// Splitter belongs to one COPY. Nothing here does I/O.
package copyfmt
