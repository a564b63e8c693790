// Package pgerr is the one error type that reaches a client as an ErrorResponse: a
// PostgreSQL SQLSTATE, message, detail, hint and position. Router, metadata, repair and
// proxy all return *Error for conditions a user must see; the proxy converts at the edge
// and answers anything unclassified as XX000.
//
// Codes are PostgreSQL's own (src/backend/utils/errcodes.txt); none are invented.
package pgerr

import (
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5/pgconn"
)

// Code is a SQLSTATE.
type Code string

// SQLSTATEs used by pgshard.
const (
	SuccessfulCompletion    Code = "00000"
	Warning                 Code = "01000"
	NoData                  Code = "02000"
	ConnectionException     Code = "08000"
	ConnectionFailure       Code = "08006"
	ProtocolViolation       Code = "08P01"
	FeatureNotSupported     Code = "0A000"
	InvalidParameterValue   Code = "22023"
	NullValueNotAllowed     Code = "22004"
	InvalidTextRep          Code = "22P02"
	DataException           Code = "22000"
	NumericValueOutOfRange  Code = "22003"
	ActiveSQLTransaction    Code = "25001"
	InFailedSQLTransaction  Code = "25P02"
	NoActiveSQLTransaction  Code = "25P01"
	InvalidAuthorization    Code = "28000"
	InvalidPassword         Code = "28P01"
	InvalidCatalogName      Code = "3D000"
	InvalidCursorName       Code = "34000"
	InvalidSQLStatementName Code = "26000"
	SyntaxError             Code = "42601"
	UndefinedColumn         Code = "42703"
	UndefinedFunction       Code = "42883"
	UndefinedTable          Code = "42P01"
	UndefinedObject         Code = "42704"
	DuplicateObject         Code = "42710"
	DuplicatePStatement     Code = "42P05"
	DuplicateCursor         Code = "42P03"
	WrongObjectType         Code = "42809"
	InvalidColumnReference  Code = "42P10"
	NameTooLong             Code = "42622"
	DatatypeMismatch        Code = "42804"
	GeneratedAlways         Code = "428C9"
	InvalidParameterCount   Code = "08P01"
	ObjectNotInPrereqState  Code = "55000"
	LockNotAvailable        Code = "55P03"
	QueryCanceled           Code = "57014"
	AdminShutdown           Code = "57P01"
	CrashShutdown           Code = "57P02"
	CannotConnectNow        Code = "57P03"
	IdleSessionTimeout      Code = "57P05"
	ConfigFileError         Code = "F0000"
	InternalError           Code = "XX000"
	ProgramLimitExceeded    Code = "54000"
	TooManyConnections      Code = "53300"
	OutOfMemory             Code = "53200"
	DependentObjectsExist   Code = "2BP01"
	SerializationFailure    Code = "40001"
	DeadlockDetected        Code = "40P01"
	UniqueViolation         Code = "23505"
	CheckViolation          Code = "23514"
)

// Resource limits (class 53).
const (
	// ConfigurationLimitExceeded is PostgreSQL's for temp_file_limit, and pgshard's for
	// its temp-file-limit.
	ConfigurationLimitExceeded Code = "53400"
	InsufficientResources      Code = "53000"
)

// Error is an error a client sees as an ErrorResponse (or, with Severity WARNING or NOTICE,
// as a NoticeResponse).
type Error struct {
	Severity string // "ERROR" when empty
	Code     Code
	Message  string
	Detail   string
	Hint     string
	Position int32 // 1-based character offset into the client's statement; 0 = none

	Where          string
	SchemaName     string
	TableName      string
	ColumnName     string
	DataTypeName   string
	ConstraintName string
	// InternalQuery is the text of a statement a function ran when the error occurred,
	// and InternalPosition a 1-based offset into it (0 = none).
	InternalQuery    string
	InternalPosition int32

	cause error
}

// New returns an ERROR with the given code and message.
func New(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// Wrap returns an ERROR with the given code and message that wraps cause (for errors.Is
// and logs; the client sees only the message).
func Wrap(cause error, code Code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...), cause: cause}
}

// WithDetail sets the detail and returns e.
func (e *Error) WithDetail(format string, args ...any) *Error {
	e.Detail = fmt.Sprintf(format, args...)
	return e
}

// WithHint sets the hint and returns e.
func (e *Error) WithHint(format string, args ...any) *Error {
	e.Hint = fmt.Sprintf(format, args...)
	return e
}

// WithSeverity sets the severity ("WARNING", "NOTICE", "FATAL") and returns e.
func (e *Error) WithSeverity(s string) *Error {
	e.Severity = s
	return e
}

func (e *Error) Error() string {
	s := e.severity() + ": " + e.Message + " (SQLSTATE " + string(e.Code) + ")"
	if e.cause != nil {
		s += ": " + e.cause.Error()
	}
	return s
}

func (e *Error) severity() string {
	if e.Severity == "" {
		return "ERROR"
	}
	return e.Severity
}

// SeverityText is the severity as sent on the wire ("ERROR" when unset).
func (e *Error) SeverityText() string { return e.severity() }

func (e *Error) Unwrap() error { return e.cause }

// FromPg converts an error a PostgreSQL server sent into an *Error with every field.
func FromPg(pe *pgconn.PgError) *Error {
	return &Error{
		Severity: pe.Severity, Code: Code(pe.Code), Message: pe.Message, Detail: pe.Detail,
		Hint: pe.Hint, Position: pe.Position, Where: pe.Where, SchemaName: pe.SchemaName,
		TableName: pe.TableName, ColumnName: pe.ColumnName, DataTypeName: pe.DataTypeName,
		ConstraintName: pe.ConstraintName, InternalQuery: pe.InternalQuery, InternalPosition: pe.InternalPosition,
		cause: pe,
	}
}

// From returns err as an *Error: itself if it is one (or wraps one), a server error
// converted, and anything else as XX000 with err's text.
func From(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return FromPg(pe)
	}
	return Wrap(err, InternalError, "%s", err.Error())
}

// CodeOf returns err's SQLSTATE, or "" if it carries none.
func CodeOf(err error) Code {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return Code(pe.Code)
	}
	return ""
}
