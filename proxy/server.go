package proxy

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"go.uber.org/zap"

	"github.com/pgbridge/pgbridge/internal/sockio"
	"github.com/pgbridge/pgbridge/pool"
	"github.com/pgbridge/pgbridge/routing"
)

// Option adjusts a Server; options are test seams.
type Option func(*Server)

// WithLogger sets the logger (default: no logging).
func WithLogger(l *zap.Logger) Option { return func(s *Server) { s.log = l } }

// WithReloader sets what the admin console's RELOAD runs (reload the
// configuration file and apply it); without one RELOAD is refused.
func WithReloader(f func() error) Option { return func(s *Server) { s.reloader = f } }

// WithClock sets the clock the guardrail timeouts are measured with.
func WithClock(now func() time.Time) Option { return func(s *Server) { s.now = now } }

// Server accepts client connections and routes each to its tenant's pool.
type Server struct {
	cfg        *routing.Config
	pool       *pool.Manager
	log        *zap.Logger
	tls        atomic.Pointer[tls.Config] // nil: TLS not offered
	mockSecret []byte                     // for the fake SCRAM exchange of unknown users
	nextID     atomic.Uint64
	now        func() time.Time
	throttle   *loginThrottle
	reloader   func() error
	logQueries atomic.Bool     // log.queries
	suspectAt  atomic.Int64    // unix nanos of the last pool.Suspect
	testHook   func(hookPoint) // tests: widens the windows between counting an answer and writing it

	mu        sync.Mutex
	listeners map[net.Listener]struct{}
	sessions  map[*session]struct{}
	cancels   map[cancelKey]*session
	admins    map[*session]struct{} // admin console sessions
	tenants   map[string]*tenantState
	draining  bool
	wg        sync.WaitGroup // one per connection, released when its session ends
	parker    *parker        // holds idle sessions without goroutines

	lastReturn  time.Time // watchdog only: last returnMemory
	parkedSince int       // watchdog only: sessions parked since then

	wdOnce sync.Once
	wdStop chan struct{} // closed by Shutdown
	wdDone chan struct{} // closed when the watchdog has returned
}

// New builds a Server for cfg that takes backends from p.
func New(cfg *routing.Config, p *pool.Manager, opts ...Option) (*Server, error) {
	s := &Server{
		cfg:        cfg,
		pool:       p,
		log:        zap.NewNop(),
		mockSecret: make([]byte, 32),
		listeners:  make(map[net.Listener]struct{}),
		sessions:   make(map[*session]struct{}),
		cancels:    make(map[cancelKey]*session),
		admins:     make(map[*session]struct{}),
		tenants:    make(map[string]*tenantState, len(cfg.Tenants)),
		now:        time.Now,
		throttle:   newLoginThrottle(throttleEntries),
		wdStop:     make(chan struct{}),
		wdDone:     make(chan struct{}),
	}
	for name, t := range cfg.Tenants {
		s.tenants[name] = newTenantState(t)
	}
	s.parker = newParker(func(ss *session) { ss.guard(ss.resume) })
	for _, o := range opts {
		o(s)
	}
	if _, err := rand.Read(s.mockSecret); err != nil {
		return nil, err
	}
	tc, err := listenTLS(cfg.Listen.TLS)
	if err != nil {
		return nil, err
	}
	s.tls.Store(tc)
	s.logQueries.Store(cfg.Log.Queries)
	return s, nil
}

// listenTLS loads the client-facing certificate; nil when TLS is off.
func listenTLS(t routing.ListenTLS) (*tls.Config, error) {
	if t.Mode == routing.ListenTLSDisable || t.CertFile == "" {
		return nil, nil
	}
	cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
	if err != nil {
		return nil, err
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, nil
}

// Reload applies a new configuration to the running server: new tenants
// are served at once, changed limits apply to live sessions, a changed
// certificate applies to new connections, and sessions of removed tenants
// end with 57P01 after their current transaction. Sessions of unchanged
// tenants never notice. The pool is updated separately (pool.Manager.Update).
// On error nothing changed.
func (s *Server) Reload(cfg *routing.Config) error {
	tc, err := listenTLS(cfg.Listen.TLS)
	if err != nil {
		return fmt.Errorf("listen.tls: %w", err)
	}
	s.mu.Lock()
	s.cfg = cfg
	s.tls.Store(tc)
	s.logQueries.Store(cfg.Log.Queries)
	for name, t := range cfg.Tenants {
		if ts := s.tenants[name]; ts != nil {
			ts.apply(t)
		} else {
			s.tenants[name] = newTenantState(t)
		}
	}
	var removed []*session
	for name, ts := range s.tenants {
		if _, ok := cfg.Tenants[name]; ok {
			continue
		}
		delete(s.tenants, name)
		ts.resume() // a paused tenant's waiters must see the removal
		for ss := range s.sessions {
			if ss.ts == ts {
				removed = append(removed, ss)
			}
		}
	}
	s.mu.Unlock()
	for _, ss := range removed {
		ss.drain(errTenantRemoved(ss.ts.name))
	}
	return nil
}

// Serve accepts connections on ln until ctx ends, then drains: it stops
// accepting, lets running transactions finish for up to
// listen.shutdown_timeout, ends every session with 57P01 and returns once
// every connection goroutine has finished. Serve may be called for several
// listeners at once.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	s.mu.Lock()
	if s.draining {
		s.mu.Unlock()
		return errors.New("proxy: server is shutting down")
	}
	s.listeners[ln] = struct{}{}
	s.mu.Unlock()
	s.wdOnce.Do(func() { go s.watchdog() })

	serveDone, shutDone := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(shutDone)
		select {
		case <-ctx.Done():
			sctx, cancel := context.WithTimeout(context.Background(), s.config().Listen.ShutdownTimeout)
			defer cancel()
			s.Shutdown(sctx)
		case <-serveDone:
		}
	}()
	defer func() { close(serveDone); <-shutDone }()

	var tempDelay time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			s.mu.Lock()
			draining := s.draining
			s.mu.Unlock()
			if draining {
				s.wg.Wait()
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || temporaryAccept(err) {
				tempDelay = min(max(2*tempDelay, 5*time.Millisecond), time.Second)
				if temporaryAccept(err) {
					// (Out of file descriptors, say: the router goes on
					// serving its sessions and accepts again later.)
					s.log.Warn("accept failed; retrying", zap.Error(err), zap.Duration("after", tempDelay))
				}
				time.Sleep(tempDelay)
				continue
			}
			return err
		}
		tempDelay = 0
		s.wg.Add(1)
		go s.handle(nc)
	}
}

// Shutdown stops accepting, waits for sessions to reach a transaction
// boundary until ctx ends, then terminates the rest with 57P01. It returns
// when every session has ended.
func (s *Server) Shutdown(ctx context.Context) {
	defer s.stopWatchdog()
	defer s.parker.close() // after every session has ended
	s.mu.Lock()
	s.draining = true
	for ln := range s.listeners {
		_ = ln.Close()
	}
	sessions := make([]*session, 0, len(s.sessions))
	for ss := range s.sessions {
		sessions = append(sessions, ss)
	}
	admins := make([]*session, 0, len(s.admins))
	for ss := range s.admins {
		admins = append(admins, ss)
	}
	s.mu.Unlock()
	for _, ss := range admins {
		ss.kill(errShutdown())
	}
	// Idle sessions end now; busy ones end at their next boundary.
	for _, ss := range sessions {
		ss.drain(errShutdown())
	}
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
		return
	case <-ctx.Done():
	}
	s.mu.Lock()
	sessions = sessions[:0]
	for ss := range s.sessions {
		sessions = append(sessions, ss)
	}
	s.mu.Unlock()
	for _, ss := range sessions {
		ss.kill(errShutdown()) // outside s.mu: a kill may wait up to a second on its client
	}
	<-done
}

// hookPoint names a place where tests may stall the router (testHook).
type hookPoint uint8

const (
	hookPumpRelease hookPoint = iota + 1 // a pump gave its backend back and is about to write the answer
	hookSyncRelease                      // the client loop (sync relay) did the same
	hookPumpOut                          // a pump is about to write an answer that keeps its backend
	hookCancelSend                       // a router cancel holds the backend and is about to send
	hookGuardEnd                         // a guardrail is about to end the session
	hookAcquired                         // attach got a backend, before it readies it (applyParams)
)

func (s *Server) hook(p hookPoint) {
	if s.testHook != nil {
		s.testHook(p)
	}
}

// temporaryAccept reports accept errors that pass: out of file
// descriptors or memory, a connection aborted before it was accepted.
func temporaryAccept(err error) bool {
	return errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) ||
		errors.Is(err, syscall.ENOBUFS) || errors.Is(err, syscall.ENOMEM) ||
		errors.Is(err, syscall.ECONNABORTED)
}

func (s *Server) handle(nc net.Conn) {
	nc = sockio.Wrap(nc)
	id := s.nextID.Add(1)
	log := s.log.With(zap.Uint64("conn_id", id), zap.String("client", nc.RemoteAddr().String()))
	ss := newSession(s, nc, id, log)
	ss.guard(ss.run)
}

// register makes a logged-in session visible to cancel and shutdown, and
// enforces the tenant's client-connection cap.
func (s *Server) register(ss *session) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.draining {
		return errShutdown()
	}
	ts := ss.ts
	if s.tenants[ts.name] != ts {
		// A reload removed the tenant (and perhaps added it back) while
		// this login ran its exchange: Reload drained only the sessions
		// registered then, and KILL, PAUSE and new limits reach only the
		// tenant's current state.
		return errTenantRemoved(ts.name)
	}
	if max := s.cfg.Listen.MaxClientConnections; max > 0 && len(s.sessions) >= max {
		return fatal(ReasonGlobalCap, "53300", "Retry later; the router serves its maximum number of clients (listen.max_client_connections).",
			"too many client connections (max_client_connections=%d)", max)
	}
	if max := ts.tenant().Policy.MaxClientConnections; max > 0 && ts.clients >= max {
		return fatal(ReasonClientCap, "53300", "Close idle connections or raise max_client_connections for this tenant.",
			"too many client connections for tenant %q (max_client_connections=%d)", ts.name, max)
	}
	ts.clients++
	s.sessions[ss] = struct{}{}
	s.cancels[ss.key] = ss
	return nil
}

func (s *Server) unregister(ss *session) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.sessions[ss]; !ok {
		return
	}
	delete(s.sessions, ss)
	delete(s.cancels, ss.key)
	ss.ts.clients--
}

// suspectBackends asks the pool to check every existing backend before
// its next use: one failed or read-only backend may mean a restart or a
// failover. At most once a second, so a client provoking errors cannot make
// the pool check constantly.
func (s *Server) suspectBackends() {
	now := s.now().UnixNano()
	last := s.suspectAt.Load()
	if now-last < int64(time.Second) || !s.suspectAt.CompareAndSwap(last, now) {
		return
	}
	s.pool.Suspect()
}

// config returns the configuration in force.
func (s *Server) config() *routing.Config {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cfg
}

// tenantState returns the live state of a configured tenant.
func (s *Server) tenantState(name string) *tenantState {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.tenants[name]
}

func (s *Server) lookupCancel(k cancelKey) *session {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cancels[k]
}
