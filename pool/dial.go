package pool

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgbridge/pgbridge/internal/sockio"
	"github.com/pgbridge/pgbridge/routing"
)

// PgconnDialer dials the cluster endpoint with pgconn as the tenant's own
// backend role, then hijacks the raw connection.
//
// Every dial resolves backend.host again (pgconn looks the name up on each
// connect; nothing here caches addresses), so a cluster endpoint that moved
// to a new writer after a failover is followed as soon as DNS says so.
type PgconnDialer struct {
	Backend routing.Backend

	// LookupFunc resolves the backend host name for each dial; nil means
	// the system resolver. It is a seam for tests and for custom DNS.
	LookupFunc pgconn.LookupFunc

	// Credentials signs RDS IAM auth tokens for tenants with
	// backend_auth: iam. Nil means the AWS SDK's default credential chain
	// (environment, shared files, web identity, ECS/EC2 roles), loaded on
	// the first IAM dial and cached.
	Credentials CredentialsProvider

	rootsOnce sync.Once
	rootPool  *x509.CertPool // from Backend.TLS.CAFile; nil without one
	rootsErr  error

	iamOnce sync.Once
	iam     *iamSigner // shared by the copies Update makes
}

func (d *PgconnDialer) signer() *iamSigner {
	d.iamOnce.Do(func() {
		if d.iam == nil {
			d.iam = &iamSigner{}
		}
	})
	return d.iam
}

// withBackend returns a dialer for new backend settings that keeps this
// one's seams and AWS credentials. The CA file is read again.
func (d *PgconnDialer) withBackend(b routing.Backend) *PgconnDialer {
	return &PgconnDialer{Backend: b, LookupFunc: d.LookupFunc, Credentials: d.Credentials, iam: d.signer()}
}

// Dial implements Dialer.
func (d *PgconnDialer) Dial(ctx context.Context, t *routing.Tenant) (*Conn, error) {
	cfg, err := d.config(ctx, t)
	if err != nil {
		return nil, err
	}
	pc, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, err
	}
	// pgconn may have a background read pending on the socket (it starts
	// one while flushing); it would swallow the first bytes the relay
	// expects. SyncConn stops it and proves the buffer empty.
	if err := pc.SyncConn(ctx); err != nil {
		_ = pc.Close(ctx)
		return nil, err
	}
	hc, err := pc.Hijack()
	if err != nil {
		_ = pc.Close(ctx)
		return nil, err
	}
	if hc.Frontend.ReadBufferLen() != 0 || hc.TxStatus != 'I' {
		_ = hc.Conn.Close()
		return nil, errors.New("pool: backend not idle after startup")
	}
	return &Conn{
		Conn:      hc.Conn,
		PID:       hc.PID,
		SecretKey: hc.SecretKey,
		Params:    hc.ParameterStatuses,
		frontend:  hc.Frontend,
		cancelTo:  hc.Conn.RemoteAddr().String(),
	}, nil
}

// config builds the pgconn configuration. Host, port and TLS come from the
// backend section; the role, database, credentials and guardrail parameters
// from the tenant. Every setting pgconn would otherwise take from a PG*
// environment variable is spelled out, so the environment cannot change
// where, how or as whom we connect.
func (d *PgconnDialer) config(ctx context.Context, t *routing.Tenant) (*pgconn.Config, error) {
	b := d.Backend
	iam := t.BackendAuth == routing.BackendAuthIAM
	mode := b.TLS.Mode
	if mode == "" {
		mode = routing.BackendTLSPrefer
	}
	if iam {
		switch mode {
		case routing.BackendTLSDisable:
			return nil, errors.New("pool: IAM authentication needs TLS to the backend (backend.tls.mode is disable)")
		case routing.BackendTLSPrefer:
			// An IAM token is a bearer credential for 15 minutes: never
			// fall back to sending it in plaintext.
			mode = routing.BackendTLSRequire
		}
	}
	dsn := fmt.Sprintf("host=%s port=%d sslmode=disable sslnegotiation=postgres sslcertmode=disable"+
		" target_session_attrs=any min_protocol_version=3.0 max_protocol_version=3.0"+
		" channel_binding=prefer require_auth='' password=''",
		quote(b.Host), b.Port)
	cfg, err := pgconn.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("pool: backend settings: %w", err)
	}
	if mode != routing.BackendTLSDisable {
		roots, err := d.roots()
		if err != nil {
			return nil, err
		}
		if (mode == routing.BackendTLSVerifyCA || mode == routing.BackendTLSVerifyFull) && roots == nil {
			return nil, fmt.Errorf("pool: backend.tls.mode %s needs backend.tls.ca_file", mode)
		}
		cfg.TLSConfig = tlsConfigFor(mode, b.Host, roots)
		if mode == routing.BackendTLSPrefer {
			cfg.Fallbacks = []*pgconn.FallbackConfig{{Host: cfg.Host, Port: cfg.Port}}
		}
	}
	if d.LookupFunc != nil {
		cfg.LookupFunc = d.LookupFunc
	}
	// The relay's reads and writes skip the runtime's syscall bookkeeping
	// (see internal/sockio); under TLS the record layer sits on top.
	dial := cfg.DialFunc
	cfg.DialFunc = func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return sockio.Wrap(c), nil
	}
	cfg.User = t.BackendUser
	cfg.Password = t.BackendPassword
	if iam {
		tok, err := d.signer().token(ctx, d.Credentials, b, t.BackendUser)
		if err != nil {
			return nil, err
		}
		cfg.Password = tok
	}
	cfg.Database = t.Database
	cfg.ConnectTimeout = b.ConnectTimeout
	cfg.ValidateConnect = nil
	cfg.AfterConnect = nil
	cfg.OnNotice = nil
	cfg.OnNotification = nil
	cfg.RuntimeParams = RuntimeParams(t.Policy)
	return cfg, nil
}

// roots reads backend.tls.ca_file once per dialer, that is once per
// configuration (Update makes a new dialer, so a replaced bundle is read
// again); nil without a CA file.
func (d *PgconnDialer) roots() (*x509.CertPool, error) {
	d.rootsOnce.Do(func() {
		f := d.Backend.TLS.CAFile
		if f == "" {
			return
		}
		pem, err := os.ReadFile(f)
		if err != nil {
			d.rootsErr = fmt.Errorf("pool: backend.tls.ca_file: %w", err)
			return
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			d.rootsErr = fmt.Errorf("pool: backend.tls.ca_file: no PEM certificate in %s", f)
			return
		}
		d.rootPool = pool
	})
	return d.rootPool, d.rootsErr
}

// tlsConfigFor returns the TLS client settings of a libpq sslmode:
//
//   - prefer: encrypt if the server agrees, verify nothing (the caller adds
//     the plaintext fallback);
//   - require: encrypt; verify nothing, unless a CA is configured, when it
//     verifies the chain as verify-ca does (libpq's rule);
//   - verify-ca: the server's certificate must chain to the CA; its names
//     are not checked;
//   - verify-full: the chain, and the certificate must name the host
//     (DNS name, or IP address when host is one).
//
// The host name is sent as SNI unless it is an IP address.
func tlsConfigFor(mode routing.BackendTLSMode, host string, roots *x509.CertPool) *tls.Config {
	c := &tls.Config{MinVersion: tls.VersionTLS12}
	if net.ParseIP(host) == nil {
		c.ServerName = host
	}
	if mode == routing.BackendTLSRequire && roots != nil {
		mode = routing.BackendTLSVerifyCA
	}
	switch mode {
	case routing.BackendTLSVerifyFull:
		c.ServerName = host
		c.RootCAs = roots
	case routing.BackendTLSVerifyCA:
		c.RootCAs = roots
		c.InsecureSkipVerify = true // the name check; the chain is checked below
		c.VerifyConnection = func(cs tls.ConnectionState) error {
			return verifyChain(cs.PeerCertificates, roots)
		}
	default: // prefer, require without a CA
		c.InsecureSkipVerify = true
	}
	return c
}

// verifyChain checks that the leaf chains to roots through the
// intermediates the server sent, ignoring host names.
func verifyChain(certs []*x509.Certificate, roots *x509.CertPool) error {
	if len(certs) == 0 {
		return errors.New("pool: backend sent no TLS certificate")
	}
	opts := x509.VerifyOptions{Roots: roots, Intermediates: x509.NewCertPool()}
	for _, c := range certs[1:] {
		opts.Intermediates.AddCert(c)
	}
	if _, err := certs[0].Verify(opts); err != nil {
		return fmt.Errorf("pool: backend certificate: %w", err)
	}
	return nil
}

// RuntimeParams are the startup parameters every backend connection of a
// tenant gets: the guardrails the backend enforces itself.
func RuntimeParams(p routing.Policy) map[string]string {
	// The router's SQL lexer reads with standard_conforming_strings on:
	// a role's or database's default of off must not reach a backend.
	// client_encoding too: a role default of a client-only encoding (ALTER
	// ROLE CURRENT_USER SET client_encoding = SJIS, which the tenant may run)
	// would otherwise reach every backend unseen.
	rp := map[string]string{"application_name": "pgbridge", "standard_conforming_strings": "on", "client_encoding": "UTF8"}
	if p.StatementTimeout > 0 {
		rp["statement_timeout"] = strconv.FormatInt(p.StatementTimeout.Milliseconds(), 10)
	}
	if p.IdleInTransactionTimeout > 0 {
		// The router enforces the limit itself (closing the client with
		// 25P03 and discarding the backend); the backend's own timeout is
		// a backstop at twice the limit, so it never wins the race and
		// leaves the client with a dead connection instead of the router's
		// error.
		rp["idle_in_transaction_session_timeout"] = strconv.FormatInt((2*p.IdleInTransactionTimeout + time.Second).Milliseconds(), 10)
	}
	return rp
}

func quote(s string) string {
	if s != "" && !strings.ContainsAny(s, ` '\`) {
		return s
	}
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s) + "'"
}
