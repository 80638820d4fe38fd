package proxy

import (
	"errors"
	"fmt"
	"syscall"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
)

// Reason names a router-originated condition. It is the metric label and
// the log field; the catalogue maps it to what the client sees.
type Reason string

// The catalogue of conditions the router itself reports (DESIGN.md §3).
const (
	ReasonAuthFailed       Reason = "auth_failed"
	ReasonDatabaseMismatch Reason = "database_mismatch"
	ReasonClientCap        Reason = "client_cap"
	ReasonGlobalCap        Reason = "global_cap"
	ReasonPoolTimeout      Reason = "pool_timeout"
	ReasonShutdown         Reason = "shutdown"
	ReasonBackendDown      Reason = "backend_unavailable"
	ReasonProtocol         Reason = "protocol_violation"
	ReasonTLSRequired      Reason = "tls_required"
	ReasonLoginTimeout     Reason = "login_timeout"
	ReasonTooLarge         Reason = "message_too_large"
	ReasonInternal         Reason = "internal"
)

// clientError is an error the router sends to a client as an ErrorResponse.
type clientError struct {
	reason   Reason
	severity string // ERROR or FATAL
	code     string // SQLSTATE
	message  string
	hint     string
}

func (e *clientError) Error() string { return e.message }

func fatal(r Reason, code, hint, format string, args ...any) *clientError {
	return &clientError{reason: r, severity: "FATAL", code: code, message: "pgbridge: " + fmt.Sprintf(format, args...), hint: hint}
}

func errAuthFailed(user string) *clientError {
	// Same text as PostgreSQL, so an unknown user and a wrong password
	// cannot be told apart.
	return &clientError{reason: ReasonAuthFailed, severity: "FATAL", code: "28P01",
		message: fmt.Sprintf("password authentication failed for user %q", user)}
}

func errPoolTimeout(tenant string, wait string) *clientError {
	return &clientError{reason: ReasonPoolTimeout, severity: "ERROR", code: "53300",
		message: fmt.Sprintf("pgbridge: no backend connection for tenant %q became free within pool_wait_timeout (%s)", tenant, wait),
		hint:    "The tenant's pool is busy; retry, shorten transactions, or raise pool_size."}
}

func errShutdown() *clientError {
	return fatal(ReasonShutdown, "57P01", "Reconnect; another pgbridge instance or this one after restart will serve you.",
		"terminating connection because the router is shutting down")
}

func errBackendDown(err error) *clientError {
	return fatal(ReasonBackendDown, "08006", "The database cluster is unreachable; retry shortly.",
		"cannot reach the database backend (%s)", sanitize(err))
}

func errProtocol(format string, args ...any) *clientError {
	return fatal(ReasonProtocol, "08P01", "", format, args...)
}

func errInternal() *clientError {
	return &clientError{reason: ReasonInternal, severity: "FATAL", code: "XX000", message: "pgbridge: internal error"}
}

// sanitize reduces a dial error to a short class without addresses or
// secrets.
func sanitize(err error) string {
	var ne interface{ Timeout() bool }
	switch {
	case errors.As(err, &ne) && ne.Timeout():
		return "connect timeout"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	default:
		return "connection failed"
	}
}

// encodeError renders an error as a wire ErrorResponse. A backend
// *pgconn.PgError passes through with its own fields.
func encodeError(dst []byte, err error) []byte {
	var ce *clientError
	var pe *pgconn.PgError
	var msg pgproto3.ErrorResponse
	switch {
	case errors.As(err, &ce):
		msg = pgproto3.ErrorResponse{Severity: ce.severity, SeverityUnlocalized: ce.severity, Code: ce.code, Message: ce.message, Hint: ce.hint}
	case errors.As(err, &pe):
		msg = pgproto3.ErrorResponse{Severity: pe.Severity, SeverityUnlocalized: pe.SeverityUnlocalized, Code: pe.Code,
			Message: pe.Message, Detail: pe.Detail, Hint: pe.Hint, Routine: pe.Routine}
	default:
		ie := errInternal()
		msg = pgproto3.ErrorResponse{Severity: ie.severity, SeverityUnlocalized: ie.severity, Code: ie.code, Message: ie.message}
	}
	out, e := msg.Encode(dst)
	if e != nil {
		return dst
	}
	return out
}
