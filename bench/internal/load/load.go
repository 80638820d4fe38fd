// Package load is the load generator behind bench/cmd/loadgen: the
// multi-tenant workloads pgbench cannot express.
//
//   - Noisy: one tenant runs queries as fast as its clients can while the
//     other (quiet) tenants run at a fixed rate; each tenant's latency is
//     reported. A baseline run leaves the noisy tenant out.
//   - Storm: many clients connect at the same instant; the time until all
//     have logged in and answered a first query is reported.
//   - Idle: many clients log in, run one query and stay connected, so that
//     the harness can measure what an idle client costs the server side.
//
// Noisy uses pgx, as an application would. Storm and Idle log in with a
// small client of their own (pgproto3 plus SCRAM-SHA-256 with the salted
// password cached per password and salt): with pgx every login would first
// run PBKDF2 (4096 rounds of HMAC-SHA-256) in the load generator, which on a
// small machine costs more CPU than the proxy under test spends on the
// login.
package load

import (
	"fmt"
	"time"

	"github.com/pgbridge/pgbridge/bench/internal/report"
)

// Modes of a Spec.
const (
	ModeNoisy = "noisy"
	ModeStorm = "storm"
	ModeIdle  = "idle"
)

// Login is how one tenant is reached through one target.
type Login struct {
	Tenant   string `json:"tenant"`
	Host     string `json:"host"`
	Port     int    `json:"port"`
	User     string `json:"user"`
	Password string `json:"password"`
	Database string `json:"database"`
}

// Spec says what to run. bench/cmd/loadgen reads it as JSON on stdin.
type Spec struct {
	Mode   string  `json:"mode"`
	Logins []Login `json:"logins"` // one per tenant
	// Seconds is how long the noisy workload runs.
	Seconds float64 `json:"seconds,omitempty"`

	// Noisy. The tenant named NoisyTenant runs NoisyClients connections in
	// a closed loop; every other tenant runs QuietClients connections that
	// together issue QuietRate queries per second. Baseline leaves the
	// noisy tenant out; NoisyOnly runs just the noisy tenant, for a run
	// whose quiet tenants are in another process, as separate
	// applications would be. Query may use $1, which gets a random
	// integer in [1, MaxArg]. StartAt (Unix nanoseconds), when set, is
	// when the clock starts, so that two processes measure the same
	// window; connecting must be done by then.
	NoisyTenant  string  `json:"noisy_tenant,omitempty"`
	NoisyClients int     `json:"noisy_clients,omitempty"`
	QuietClients int     `json:"quiet_clients,omitempty"`
	QuietRate    float64 `json:"quiet_rate,omitempty"`
	Baseline     bool    `json:"baseline,omitempty"`
	NoisyOnly    bool    `json:"noisy_only,omitempty"`
	StartAt      int64   `json:"start_at,omitempty"`
	Query        string  `json:"query,omitempty"`
	MaxArg       int     `json:"max_arg,omitempty"`

	// Storm and Idle: Clients connections spread over the logins in turn.
	// Idle opens at most Parallel at a time and keeps them for at most
	// HoldSeconds (or until released).
	Clients     int     `json:"clients,omitempty"`
	Parallel    int     `json:"parallel,omitempty"`
	HoldSeconds float64 `json:"hold_seconds,omitempty"`

	// ConnectTimeoutSeconds bounds one login; QueryTimeoutSeconds one
	// query. Defaults: 30 s and 10 s.
	ConnectTimeoutSeconds float64 `json:"connect_timeout_seconds,omitempty"`
	QueryTimeoutSeconds   float64 `json:"query_timeout_seconds,omitempty"`
}

// DefaultQuery is pgbench's select-only query.
const DefaultQuery = "SELECT abalance FROM pgbench_accounts WHERE aid = $1"

func (s *Spec) connectTimeout() time.Duration { return secondsOr(s.ConnectTimeoutSeconds, 30) }
func (s *Spec) queryTimeout() time.Duration   { return secondsOr(s.QueryTimeoutSeconds, 10) }

func secondsOr(v, def float64) time.Duration {
	if v <= 0 {
		v = def
	}
	return time.Duration(v * float64(time.Second))
}

// Validate checks that the spec can run.
func (s *Spec) Validate() error {
	if len(s.Logins) == 0 {
		return fmt.Errorf("load: no logins")
	}
	switch s.Mode {
	case ModeNoisy:
		if s.Seconds <= 0 {
			return fmt.Errorf("load: noisy needs seconds > 0")
		}
		if s.Baseline && s.NoisyOnly {
			return fmt.Errorf("load: noisy: baseline and noisy_only exclude each other")
		}
		if !s.NoisyOnly && (s.QuietRate <= 0 || s.QuietClients <= 0) {
			return fmt.Errorf("load: noisy needs quiet_rate and quiet_clients > 0")
		}
		found := false
		for _, l := range s.Logins {
			found = found || l.Tenant == s.NoisyTenant
		}
		if !found {
			return fmt.Errorf("load: noisy tenant %q has no login", s.NoisyTenant)
		}
		if !s.Baseline && s.NoisyClients <= 0 {
			return fmt.Errorf("load: noisy needs noisy_clients > 0")
		}
		if len(s.Logins) < 2 && !s.NoisyOnly {
			return fmt.Errorf("load: noisy needs at least one quiet tenant")
		}
	case ModeStorm, ModeIdle:
		if s.Clients <= 0 {
			return fmt.Errorf("load: %s needs clients > 0", s.Mode)
		}
	default:
		return fmt.Errorf("load: unknown mode %q", s.Mode)
	}
	return nil
}

// errorText shortens an error for a report cell.
func errorText(err error) string {
	s := err.Error()
	if r := []rune(s); len(r) > 300 {
		s = string(r[:297]) + "..."
	}
	return s
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// Event is one line of bench/cmd/loadgen's output (JSON, one per line).
type Event struct {
	// Event is "connected" (idle: every client is logged in and idle now),
	// "result" (the run is over) or "error".
	Event string              `json:"event"`
	Error string              `json:"error,omitempty"`
	Noisy *report.NoisyResult `json:"noisy,omitempty"`
	Storm *report.StormResult `json:"storm,omitempty"`
	Idle  *report.IdleResult  `json:"idle,omitempty"`
}

// Event kinds.
const (
	EventConnected = "connected"
	EventResult    = "result"
	EventError     = "error"
)
