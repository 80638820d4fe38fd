package routing

import (
	"math"
	"time"

	"github.com/pgbridge/pgbridge/internal/scram"
)

// PoolMode says when a backend connection goes back to the tenant pool.
type PoolMode string

const (
	// PoolTransaction releases the backend at the end of every transaction.
	PoolTransaction PoolMode = "transaction"
	// PoolSession keeps the backend until the client disconnects.
	PoolSession PoolMode = "session"
)

// ListenTLSMode is the client-facing TLS policy.
type ListenTLSMode string

const (
	ListenTLSDisable ListenTLSMode = "disable" // SSLRequest answered 'N'
	ListenTLSAllow   ListenTLSMode = "allow"   // TLS offered, plaintext accepted
	ListenTLSRequire ListenTLSMode = "require" // plaintext logins refused
)

// BackendTLSMode is the libpq sslmode used towards the cluster.
type BackendTLSMode string

const (
	BackendTLSDisable    BackendTLSMode = "disable"
	BackendTLSPrefer     BackendTLSMode = "prefer"
	BackendTLSRequire    BackendTLSMode = "require"
	BackendTLSVerifyCA   BackendTLSMode = "verify-ca"
	BackendTLSVerifyFull BackendTLSMode = "verify-full"
)

// Config is a loaded, expanded, defaulted and validated configuration.
// It is immutable once returned by Load or Parse; share it by pointer.
type Config struct {
	Listen   Listen
	Admin    Admin
	Backend  Backend
	Log      Log
	Metrics  Metrics
	Defaults Policy
	// Tenants by tenant name. Every tenant's Policy is Defaults with the
	// tenant's own overrides applied.
	Tenants map[string]*Tenant

	users map[string]*Tenant // client user name -> tenant
}

// Listen is the client-facing side.
type Listen struct {
	Address string // host:port, default 127.0.0.1:6432
	TLS     ListenTLS
	// MaxClientConnections caps client connections router-wide (0 = unlimited).
	MaxClientConnections int
	// LoginTimeout bounds everything from accept to the first ReadyForQuery.
	LoginTimeout time.Duration
	// MaxStartupPacket caps the size of a StartupMessage (bytes).
	MaxStartupPacket int
	// ShutdownTimeout bounds how long running transactions may finish on shutdown.
	ShutdownTimeout time.Duration
}

// ListenTLS is the client-facing TLS configuration. Mode is ListenTLSDisable
// when no certificate is configured.
type ListenTLS struct {
	CertFile string
	KeyFile  string
	Mode     ListenTLSMode
}

// Admin is the SRE side: HTTP endpoints and console logins.
type Admin struct {
	Address string
	Users   map[string]Credential
}

// Backend is the cluster endpoint shared by all tenants.
type Backend struct {
	Host           string
	Port           int
	TLS            BackendTLS
	MaxConnections int // budget across all tenants
	// MaxActiveTransactions bounds the transactions running at once on
	// the cluster over all transaction-mode tenants, shared fairly among
	// the tenants that want more (0 = no limit).
	MaxActiveTransactions int
	ConnectTimeout        time.Duration
	ResumeTimeout         time.Duration
	IdleTimeout           time.Duration // 0 = never close idle connections
	MaxLifetime           time.Duration // 0 = unlimited
	// AWSRegion is the region RDS IAM auth tokens are signed for
	// (tenants with BackendAuth == BackendAuthIAM).
	AWSRegion string
}

// BackendAuth is how the router proves a tenant's backend role to the cluster.
type BackendAuth string

const (
	// BackendAuthPassword uses the tenant's backend_password.
	BackendAuthPassword BackendAuth = "password"
	// BackendAuthIAM signs an RDS IAM auth token per dial.
	BackendAuthIAM BackendAuth = "iam"
)

// Metrics configures the Prometheus exposition.
type Metrics struct {
	// TenantLabels false folds every tenant into one series (tenant="")
	// for fleets with thousands of tenants.
	TenantLabels bool
}

// BackendTLS is the TLS policy towards the cluster.
type BackendTLS struct {
	Mode   BackendTLSMode
	CAFile string
}

// Log configures the process logger.
type Log struct {
	Level  string // debug | info | warn | error
	Format string // json | console | auto (console on a terminal)
	// Queries allows query text in logs (off by default: it may hold data).
	Queries bool
}

// Policy is the set of per-tenant limits; Config.Defaults holds the values a
// tenant inherits for every key it does not set.
type Policy struct {
	PoolMode                 PoolMode
	PoolSize                 int
	MinPoolSize              int
	MaxClientConnections     int
	PoolWaitTimeout          time.Duration
	StatementTimeout         time.Duration // sent to the backend; 0 = backend default
	MaxStatementTimeout      time.Duration // enforced by the router; 0 = off
	IdleInTransactionTimeout time.Duration // enforced by the router, sent to the backend as 2x+1s as a backstop; 0 = off, nothing sent
	ClientIdleTimeout        time.Duration // 0 = off
	QueryRate                float64       // per second; 0 = unlimited
	QueryBurst               int
	ConnectionRate           float64 // new client connections per second; 0 = unlimited
	// ReservedConnections is a guaranteed minimum share of the backend
	// budget: other tenants' demand never takes it away.
	ReservedConnections int
	// MaxMessageSize caps one protocol message from a client (bytes).
	MaxMessageSize int
}

// Tenant is one Bridge tenant: its own database, its own backend role, and
// the client logins that map to it.
type Tenant struct {
	Name            string
	Database        string
	BackendUser     string
	BackendPassword string
	BackendAuth     BackendAuth
	Users           map[string]Credential
	Policy          Policy
}

// Credential is how a client login proves who it is. Both YAML forms
// ({scram: ...} and {password: ...}) end up as a SCRAM verifier.
type Credential struct {
	Verifier scram.Verifier
}

// EffectiveQueryBurst is the size of the tenant's query token bucket:
// QueryBurst, or when that is 0, one second's worth of QueryRate (at
// least 1).
func (p Policy) EffectiveQueryBurst() int {
	if p.QueryBurst > 0 {
		return p.QueryBurst
	}
	return DefaultBurst(p.QueryRate)
}

// DefaultBurst is a token bucket's size for rate (per second) when none
// is configured: one second's worth, at least 1.
func DefaultBurst(rate float64) int { return max(1, int(math.Ceil(rate))) }
