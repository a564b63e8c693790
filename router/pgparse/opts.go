package pgparse

/*
#include <stddef.h>
#include <stdlib.h>

// The declarations of libpg_query's functions and result types that pg_query_go compiles
// into its parser package (pg_query.h) but does not expose in Go: the parser with options,
// which sets the scanner's standard_conforming_strings and backslash_quote for one call.
typedef struct {
	char* message;
	char* funcname;
	char* filename;
	int lineno;
	int cursorpos;
	char* context;
} pgparsePgQueryError;

typedef struct {
	size_t len;
	char* data;
} pgparsePgQueryProtobuf;

typedef struct {
	pgparsePgQueryProtobuf parse_tree;
	char* stderr_buffer;
	pgparsePgQueryError* error;
} pgparsePgQueryProtobufParseResult;

pgparsePgQueryProtobufParseResult pg_query_parse_protobuf_opts(const char* input, int parser_options);
void pg_query_free_protobuf_parse_result(pgparsePgQueryProtobufParseResult result);
*/
import "C"

import (
	"unsafe"

	"github.com/pganalyze/pg_query_go/v5/parser"

	"github.com/pgshard/pgshard/router/sqllex"
)

// libpg_query's parser option bits (pg_query.h).
const (
	optDisableBackslashQuote   = 16
	optDisableStandardStrings  = 32
	optDisableEscapeStringWarn = 64
)

// parseToProtobuf is pg_query_go's parser.ParseToProtobuf with the scanner settings of
// mode. escape_string_warning is always off: the warnings would go to the process's
// standard error (libpg_query redirects it to a pipe while it parses), and the session's
// own server warns the client anyway.
func parseToProtobuf(input string, mode sqllex.Mode) ([]byte, error) {
	opts := optDisableEscapeStringWarn
	if mode&sqllex.NonStandard != 0 {
		opts |= optDisableStandardStrings
	}
	if mode&sqllex.NoBackslashQuote != 0 {
		opts |= optDisableBackslashQuote
	}
	return parseToProtobufOpts(input, opts)
}

func parseToProtobufOpts(input string, opts int) ([]byte, error) {
	inputC := C.CString(input)
	defer C.free(unsafe.Pointer(inputC))
	res := C.pg_query_parse_protobuf_opts(inputC, C.int(opts))
	defer C.pg_query_free_protobuf_parse_result(res)
	if res.error != nil {
		e := &parser.Error{
			Message:   C.GoString(res.error.message),
			Lineno:    int(res.error.lineno),
			Cursorpos: int(res.error.cursorpos),
		}
		if res.error.funcname != nil {
			e.Funcname = C.GoString(res.error.funcname)
		}
		if res.error.filename != nil {
			e.Filename = C.GoString(res.error.filename)
		}
		if res.error.context != nil {
			e.Context = C.GoString(res.error.context)
		}
		return nil, e
	}
	return C.GoBytes(unsafe.Pointer(res.parse_tree.data), C.int(res.parse_tree.len)), nil
}
