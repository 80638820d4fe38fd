package proxy

import (
	"errors"
	"fmt"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgbridge/pgbridge/internal/stats"
)

// Reason names a router-originated condition. It is the metric label and
// the log field; the catalogue maps it to what the client sees.
type Reason string

// The catalogue of conditions the router itself reports (DESIGN.md §3).
// Where a condition is counted, its Reason is the metric label of
// internal/stats.
const (
	ReasonAuthFailed        Reason = stats.RejectAuthFailed
	ReasonDatabaseMismatch  Reason = stats.RejectDatabase
	ReasonClientCap         Reason = stats.RejectClientCap
	ReasonGlobalCap         Reason = stats.RejectGlobalCap
	ReasonPoolTimeout       Reason = stats.RejectPoolTimeout
	ReasonRateLimit         Reason = stats.RejectRateLimit
	ReasonConnectionRate    Reason = stats.RejectConnectionRate
	ReasonLoginThrottled    Reason = stats.RejectLoginThrottled
	ReasonTooLarge          Reason = stats.RejectMessageTooLarge
	ReasonStatementTimeout  Reason = stats.CancelStatementTimeout
	ReasonStatementStuck    Reason = stats.CloseStatementTimeout
	ReasonIdleInTransaction Reason = stats.CloseIdleInTransaction
	ReasonClientIdle        Reason = stats.CloseClientIdle
	ReasonShutdown          Reason = stats.CloseDrain
	ReasonTenantRemoved     Reason = stats.CloseTenantRemoved
	ReasonKilled            Reason = stats.CloseKilled
	ReasonBackendDown       Reason = "backend_unavailable"
	ReasonProtocol          Reason = stats.CloseProtocol
	ReasonTLSRequired       Reason = "tls_required"
	ReasonLoginTimeout      Reason = "login_timeout"
	ReasonInternal          Reason = "internal"
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

func errAdmitTimeout(tenant string, wait string, limit int) *clientError {
	return &clientError{reason: ReasonPoolTimeout, severity: "ERROR", code: "53300",
		message: fmt.Sprintf("pgbridge: tenant %q waited pool_wait_timeout (%s) for one of the cluster's max_active_transactions (%d)", tenant, wait, limit),
		hint:    "Every tenant's transactions together are at the router's active-transaction limit; retry, shorten transactions, or raise backend.max_active_transactions."}
}

func errRateLimit(tenant string, rate float64, wait time.Duration) *clientError {
	return &clientError{reason: ReasonRateLimit, severity: "ERROR", code: "53400",
		message: fmt.Sprintf("pgbridge: tenant %q is over its query rate (query_rate=%g/s); no token within %s", tenant, rate, wait),
		hint:    "Slow down or raise query_rate/query_burst for this tenant."}
}

func errConnectionRate(tenant string, rate float64) *clientError {
	return fatal(ReasonConnectionRate, "53400", "Reconnect more slowly, reuse connections, or raise connection_rate for this tenant.",
		"tenant %q is over its login rate (connection_rate=%g/s)", tenant, rate)
}

func errLoginThrottled(retry time.Duration) *clientError {
	return fatal(ReasonLoginThrottled, "53400", "",
		"too many failed login attempts from this address for this user; retry in %s", retry.Round(time.Second))
}

// errStatementStuck ends a session whose request outlived
// max_statement_timeout by cancelGrace after the router's cancel.
func errStatementStuck(limit time.Duration) *clientError {
	return &clientError{reason: ReasonStatementStuck, severity: "FATAL", code: "57014",
		message: fmt.Sprintf("pgbridge: terminating connection: its request ran longer than max_statement_timeout (%s) and did not end when cancelled", limit),
		hint:    "The statement caught the cancel, or the client held its backend without a Sync; the router enforces the limit whatever the session does."}
}

func errStatementTimeout(limit time.Duration) *clientError {
	return &clientError{reason: ReasonStatementTimeout, severity: "ERROR", code: "57014",
		message: fmt.Sprintf("pgbridge: canceling statement: it ran longer than max_statement_timeout (%s)", limit),
		hint:    "The router enforces this limit whatever statement_timeout the session sets; make the statement faster or raise max_statement_timeout."}
}

func errIdleInTransaction(limit time.Duration) *clientError {
	return fatal(ReasonIdleInTransaction, "25P03", "The transaction was rolled back; commit or roll back promptly, or raise idle_in_transaction_timeout.",
		"terminating connection: idle in transaction longer than idle_in_transaction_timeout (%s)", limit)
}

func errClientIdle(limit time.Duration) *clientError {
	return fatal(ReasonClientIdle, "57P05", "Reconnect when needed; the pool closes sessions idle longer than client_idle_timeout.",
		"terminating connection: idle longer than client_idle_timeout (%s)", limit)
}

func errTooLarge(size, limit int) *clientError {
	return fatal(ReasonTooLarge, "54000", "Send smaller messages (split large statements or COPY data) or raise max_message_size.",
		"message of %d bytes exceeds max_message_size (%d bytes)", size, limit)
}

func errKilled() *clientError {
	return fatal(ReasonKilled, "57P01", "An administrator ended this session from the pgbridge admin console; reconnect.",
		"terminating connection due to administrator command")
}

func errTenantRemoved(tenant string) *clientError {
	return fatal(ReasonTenantRemoved, "57P01", "The tenant was removed from the pgbridge configuration.",
		"terminating connection: tenant %q is no longer served by this router", tenant)
}

// errClientLeft ends a session whose client hung up while it waited; no
// one reads the message.
func errClientLeft() *clientError {
	return &clientError{severity: "FATAL", code: "08006", reason: "client closed",
		message: "pgbridge: the client closed its connection while its request waited"}
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

// errQueryInSegment refuses a Query or FunctionCall sent after
// extended-protocol messages with no Sync between, in transaction pooling
// mode, that the router cannot hold back until the backend has answered
// them (hold.go): a COPY FROM STDIN one of them started still waits for
// its data, or the session's count of answers is unsure since a failed
// COPY. PostgreSQL would fail the COPY over it; no driver sends this.
func errQueryInSegment() *clientError {
	return errProtocol("a Query or FunctionCall must not follow extended-protocol messages before their Sync while a COPY they started is in progress, in transaction pooling mode")
}

// errWaitCancelled answers a request the client cancelled while it waited
// for a backend (a query_rate token, a PAUSE, the pool): it never ran.
func errWaitCancelled() *clientError {
	return &clientError{severity: "ERROR", code: "57014", message: "pgbridge: canceling statement due to user request (it was waiting for a backend connection and did not run)"}
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
