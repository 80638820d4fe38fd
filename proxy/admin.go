package proxy

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
	"go.uber.org/zap"

	"github.com/pgbridge/pgbridge/internal/stats"
	"github.com/pgbridge/pgbridge/proxy/internal/wire"
	"github.com/pgbridge/pgbridge/routing"
)

// The admin console: logins listed in admin.users connect to the database
// "pgbridge" with psql and get SHOW commands and controls, answered as
// ordinary result sets over the simple query protocol. Column names follow
// PgBouncer's where the concept is the same, so existing habits and
// scripts carry over.

// adminParams are the ParameterStatus values an admin session reports;
// psql needs server_version and the encoding.
var adminParams = map[string]string{
	"server_version":              "15.0 (pgbridge admin console)",
	"server_encoding":             "UTF8",
	"client_encoding":             "UTF8",
	"DateStyle":                   "ISO, MDY",
	"integer_datetimes":           "on",
	"standard_conforming_strings": "on",
	"application_name":            "",
}

// adminLogin authenticates an admin console login. Unknown names run the
// same mock exchange as unknown tenant users: a tenant login asking for the
// console gets the same 28P01 as a wrong password.
func (ss *session) adminLogin(ctx context.Context, sm *startupMessage) (bool, error) {
	cfg := ss.srv.config()
	cred, known := cfg.Admin.Users[sm.user]
	allowed := known
	if !known {
		// A tenant login runs its own exchange (its salt), then fails.
		_, cred, known = cfg.LookupUser(sm.user)
	}
	if err := ss.checkPassword(ctx, sm.user, cred, known, allowed); err != nil {
		return false, err
	}
	if err := ss.srv.registerAdmin(ss); err != nil {
		return false, err
	}
	ss.admin = true
	ss.startup = sm
	ss.log = ss.log.With(zap.String("admin", sm.user))
	return true, ss.sendWelcome(adminParams)
}

// adminMaxMessage bounds one message to the console.
const adminMaxMessage = 1 << 20

// serveAdmin answers console commands until the client leaves.
func (ss *session) serveAdmin() string {
	defer ss.srv.unregisterAdmin(ss)
	failed := false // extended protocol refused; skip to Sync
	for {
		f, err := ss.crd.ReadFrame(adminMaxMessage)
		if err != nil {
			if errors.Is(err, wire.ErrFrameTooLarge) {
				ss.writeError(nil, &clientError{severity: "FATAL", code: "54000",
					message: fmt.Sprintf("pgbridge: admin console messages are limited to %d bytes", adminMaxMessage)})
				return "message too large"
			}
			if errors.Is(err, wire.ErrBadLength) {
				ss.writeError(nil, errProtocol("invalid message length"))
				return "protocol violation"
			}
			return "client closed"
		}
		switch f[0] {
		case 'X':
			return "client terminated"
		case 'Q':
			if len(f) < 6 || f[len(f)-1] != 0 {
				ss.writeError(nil, errProtocol("invalid Query message: its text must end with a NUL byte"))
				return "protocol violation"
			}
			out := ss.adminCommand(string(f[5 : len(f)-1]))
			out = append(out, readyIdle...)
			if err := ss.writeClient(out); err != nil {
				return "client write error"
			}
		case 'F':
			// A FunctionCall is a request of its own, answered with
			// ReadyForQuery (skipped, like everything, after an
			// extended-protocol error until Sync).
			if !failed {
				out := append(adminError("0A000", "the admin console speaks the simple query protocol only"), readyIdle...)
				if err := ss.writeClient(out); err != nil {
					return "client write error"
				}
			}
		case 'S':
			failed = false
			if err := ss.writeClient(readyIdle); err != nil {
				return "client write error"
			}
		default:
			if !failed {
				failed = true
				if err := ss.writeClient(encodeError(nil, &clientError{severity: "ERROR", code: "0A000",
					message: "pgbridge: the admin console speaks the simple query protocol only"})); err != nil {
					return "client write error"
				}
			}
		}
	}
}

func adminError(code, format string, args ...any) []byte {
	return encodeError(nil, &clientError{severity: "ERROR", code: code, message: "pgbridge: " + fmt.Sprintf(format, args...)})
}

// adminCommand runs one console command and returns its complete answer
// (without ReadyForQuery).
func (ss *session) adminCommand(q string) []byte {
	words := strings.Fields(strings.TrimSpace(strings.TrimRight(strings.TrimSpace(q), ";")))
	if len(words) == 0 {
		b, _ := (&pgproto3.EmptyQueryResponse{}).Encode(nil)
		return b
	}
	cmd := strings.ToUpper(words[0])
	args := words[1:]
	ss.log.Info("admin command", zap.String("command", cmd), zap.Strings("args", args))
	s := ss.srv
	switch cmd {
	case "SHOW":
		if len(args) != 1 {
			return adminError("42601", "usage: SHOW TENANTS|POOLS|CLIENTS|SERVERS|STATS|CONFIG|HELP")
		}
		switch strings.ToUpper(args[0]) {
		case "TENANTS":
			return s.showTenants()
		case "POOLS":
			return s.showPools()
		case "CLIENTS":
			return s.showClients()
		case "SERVERS":
			return s.showServers()
		case "STATS":
			return s.showStats()
		case "CONFIG":
			return s.showConfig()
		case "HELP":
			return showHelp()
		}
		return adminError("42601", "unknown SHOW item %q; try SHOW HELP", args[0])
	case "RELOAD":
		if len(args) != 0 {
			return adminError("42601", "usage: RELOAD")
		}
		if s.reloader == nil {
			return adminError("55000", "this router has no configuration file to reload")
		}
		if err := s.reloader(); err != nil {
			return adminError("F0000", "reload failed; the previous configuration stays: %v", err)
		}
		return commandComplete("RELOAD")
	case "PAUSE", "RESUME":
		if len(args) > 1 {
			return adminError("42601", "usage: %s [tenant]", cmd)
		}
		var names []string
		if len(args) == 1 {
			names = []string{args[0]}
		}
		if err := s.setPaused(names, cmd == "PAUSE"); err != nil {
			return adminError("42704", "%v", err)
		}
		return commandComplete(cmd)
	case "KILL":
		if len(args) != 1 {
			return adminError("42601", "usage: KILL tenant")
		}
		n, ok := s.killTenant(args[0])
		if !ok {
			return adminError("42704", "no tenant %q", args[0])
		}
		ss.log.Info("tenant sessions killed", zap.String("tenant", args[0]), zap.Int("sessions", n))
		return commandComplete("KILL")
	case "KILL_CLIENT":
		if len(args) != 1 {
			return adminError("42601", "usage: KILL_CLIENT id")
		}
		id, err := strconv.ParseUint(args[0], 10, 64)
		if err != nil || !s.killClient(id) {
			return adminError("42704", "no client with id %q (see SHOW CLIENTS)", args[0])
		}
		return commandComplete("KILL_CLIENT")
	}
	return adminError("42601", "unknown admin command %q; try SHOW HELP", words[0])
}

func commandComplete(tag string) []byte {
	b, _ := (&pgproto3.CommandComplete{CommandTag: []byte(tag)}).Encode(nil)
	return b
}

// resultSet encodes a whole text result: RowDescription, DataRows,
// CommandComplete.
func resultSet(cols []string, rows [][]string) []byte {
	fields := make([]pgproto3.FieldDescription, len(cols))
	for i, c := range cols {
		fields[i] = pgproto3.FieldDescription{Name: []byte(c), DataTypeOID: 25, DataTypeSize: -1, TypeModifier: -1}
	}
	b, _ := (&pgproto3.RowDescription{Fields: fields}).Encode(nil)
	vals := make([][]byte, len(cols))
	for _, r := range rows {
		for i := range vals {
			vals[i] = []byte(r[i])
		}
		b, _ = (&pgproto3.DataRow{Values: vals}).Encode(b)
	}
	b, _ = (&pgproto3.CommandComplete{CommandTag: []byte("SHOW")}).Encode(b)
	return b
}

func showHelp() []byte {
	rows := [][]string{
		{"SHOW TENANTS", "configured tenants, their limits and connected clients"},
		{"SHOW POOLS", "per tenant: clients and backend connections by state"},
		{"SHOW CLIENTS", "every client session"},
		{"SHOW SERVERS", "every backend connection in use or idle"},
		{"SHOW STATS", "per tenant: transactions, queries, bytes, times"},
		{"SHOW CONFIG", "the effective configuration (no secrets)"},
		{"RELOAD", "reload the configuration file"},
		{"PAUSE [tenant]", "new transactions wait (running ones finish)"},
		{"RESUME [tenant]", "end a PAUSE"},
		{"KILL tenant", "end every session of the tenant now (57P01)"},
		{"KILL_CLIENT id", "end one session now (57P01)"},
	}
	return resultSet([]string{"command", "description"}, rows)
}

func itoa(n int) string     { return strconv.Itoa(n) }
func utoa(n uint64) string  { return strconv.FormatUint(n, 10) }
func btoa(b bool) string    { return strconv.FormatBool(b) }
func usec(s float64) string { return strconv.FormatInt(int64(math.Round(s*1e6)), 10) }

// tenantRows builds one row per configured tenant from its live snapshot
// and its configuration.
func (s *Server) tenantRows(row func(ts stats.TenantSnapshot, tc *routing.Tenant) []string) [][]string {
	snap := s.Snapshot()
	rows := make([][]string, 0, len(snap.Tenants))
	for _, ts := range snap.Tenants {
		if t := s.tenantState(ts.Name); t != nil {
			rows = append(rows, row(ts, t.tenant()))
		}
	}
	return rows
}

func (s *Server) showTenants() []byte {
	rows := s.tenantRows(func(ts stats.TenantSnapshot, tc *routing.Tenant) []string {
		p := tc.Policy
		return []string{ts.Name, tc.Database, tc.BackendUser, string(p.PoolMode), itoa(p.PoolSize),
			itoa(p.ReservedConnections), itoa(p.MaxClientConnections), itoa(ts.ClientsActive + ts.ClientsIdle + ts.ClientsWaiting), btoa(ts.Paused)}
	})
	return resultSet([]string{"tenant", "database", "backend_user", "pool_mode", "pool_size", "reserved_connections",
		"max_client_connections", "clients", "paused"}, rows)
}

func (s *Server) showPools() []byte {
	rows := s.tenantRows(func(ts stats.TenantSnapshot, tc *routing.Tenant) []string {
		return []string{ts.Name, tc.Database, tc.BackendUser, itoa(ts.ClientsActive), itoa(ts.ClientsWaiting), itoa(ts.ClientsIdle),
			itoa(ts.ServersActive), itoa(ts.ServersIdle), itoa(ts.ServersConnecting), itoa(ts.Pinned), itoa(tc.Policy.PoolSize),
			string(tc.Policy.PoolMode), btoa(ts.Paused)}
	})
	return resultSet([]string{"tenant", "database", "user", "cl_active", "cl_waiting", "cl_idle", "sv_active", "sv_idle", "sv_login",
		"pinned", "pool_size", "pool_mode", "paused"}, rows)
}

// clientInfo is one session as the console shows it.
type clientInfo struct {
	id               uint64
	tenant, user, db string
	state            string
	addr             net.Addr
	since            time.Time
	tls              bool
	app              string
	pinned           string
	backendPID       uint32
}

func (s *Server) clients() []clientInfo {
	s.mu.Lock()
	out := make([]clientInfo, 0, len(s.sessions))
	for ss := range s.sessions {
		ci := clientInfo{id: ss.id, tenant: ss.ts.name, user: ss.startup.user, db: ss.startup.database,
			addr: ss.nc.RemoteAddr(), since: ss.start, tls: ss.tls, app: ss.startup.params["application_name"]}
		ss.mu.Lock()
		switch {
		case ss.be != nil:
			ci.state, ci.backendPID = "active", ss.be.PID
		case ss.waiting:
			ci.state = "waiting"
		default:
			ci.state = "idle"
		}
		ci.pinned = ss.pinned
		ss.mu.Unlock()
		out = append(out, ci)
	}
	s.mu.Unlock()
	slices.SortFunc(out, func(a, b clientInfo) int { return int(a.id) - int(b.id) })
	return out
}

func splitAddr(a net.Addr) (string, string) {
	h, p, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String(), ""
	}
	return h, p
}

func (s *Server) showClients() []byte {
	var rows [][]string
	for _, c := range s.clients() {
		host, port := splitAddr(c.addr)
		pid := ""
		if c.backendPID != 0 {
			pid = strconv.FormatUint(uint64(c.backendPID), 10)
		}
		rows = append(rows, []string{utoa(c.id), c.tenant, c.user, c.db, c.state, host, port,
			c.since.UTC().Format(time.DateTime), btoa(c.tls), c.app, c.pinned, pid})
	}
	return resultSet([]string{"id", "tenant", "user", "database", "state", "addr", "port", "connect_time", "tls",
		"application_name", "pinned", "remote_pid"}, rows)
}

// showServers lists backend connections handed to sessions. Idle ones sit
// in the pool; they are counted per tenant in SHOW POOLS (sv_idle).
func (s *Server) showServers() []byte {
	var rows [][]string
	now := s.now()
	for _, c := range s.clients() {
		if c.backendPID == 0 {
			continue
		}
		t := s.tenantState(c.tenant)
		if t == nil {
			continue
		}
		tc := t.tenant()
		rows = append(rows, []string{c.tenant, tc.Database, tc.BackendUser, "active", strconv.FormatUint(uint64(c.backendPID), 10), utoa(c.id), ""})
	}
	for _, ic := range s.pool.IdleConns() {
		t := s.tenantState(ic.Tenant)
		if t == nil {
			continue
		}
		tc := t.tenant()
		idle := strconv.FormatFloat(now.Sub(ic.LastUsed).Seconds(), 'f', 1, 64)
		rows = append(rows, []string{ic.Tenant, tc.Database, tc.BackendUser, "idle", strconv.FormatUint(uint64(ic.PID), 10), "", idle})
	}
	return resultSet([]string{"tenant", "database", "user", "state", "remote_pid", "client_id", "idle_seconds"}, rows)
}

func (s *Server) showStats() []byte {
	snap := s.Snapshot()
	rows := make([][]string, 0, len(snap.Tenants))
	sum := func(m map[string]uint64) uint64 {
		var n uint64
		for _, v := range m {
			n += v
		}
		return n
	}
	for _, ts := range snap.Tenants {
		qd := ts.QueryDuration
		avg, p99 := 0.0, 0.0
		if qd.Count > 0 {
			avg = qd.Sum / float64(qd.Count)
			p99 = qd.Quantile(0.99)
		}
		rows = append(rows, []string{ts.Name, utoa(ts.Transactions), utoa(ts.Queries), utoa(ts.BytesIn), utoa(ts.BytesOut),
			usec(qd.Sum), usec(ts.PoolWait.Sum), usec(avg), usec(p99), utoa(sum(ts.Rejections)), utoa(sum(ts.Cancels))})
	}
	return resultSet([]string{"tenant", "total_xact_count", "total_query_count", "total_received", "total_sent",
		"total_query_time", "total_wait_time", "avg_query_time", "p99_query_time", "rejections", "cancels"}, rows)
}

func (s *Server) showConfig() []byte {
	set := s.config().Settings()
	rows := make([][]string, len(set))
	for i, st := range set {
		rows[i] = []string{st.Key, st.Value}
	}
	return resultSet([]string{"key", "value"}, rows)
}

// setPaused pauses or resumes the named tenants (all when names is empty).
func (s *Server) setPaused(names []string, pause bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var list []*tenantState
	if len(names) == 0 {
		for _, ts := range s.tenants {
			list = append(list, ts)
		}
	}
	for _, n := range names {
		ts := s.tenants[n]
		if ts == nil {
			return fmt.Errorf("no tenant %q", n)
		}
		list = append(list, ts)
	}
	for _, ts := range list {
		if pause {
			ts.pause()
		} else {
			ts.resume()
		}
	}
	return nil
}

func (s *Server) killTenant(name string) (int, bool) {
	s.mu.Lock()
	ts := s.tenants[name]
	var victims []*session
	for ss := range s.sessions {
		if ss.ts == ts {
			victims = append(victims, ss)
		}
	}
	s.mu.Unlock()
	if ts == nil {
		return 0, false
	}
	for _, ss := range victims {
		ss.end(errKilled())
	}
	return len(victims), true
}

func (s *Server) killClient(id uint64) bool {
	s.mu.Lock()
	var victim *session
	for ss := range s.sessions {
		if ss.id == id {
			victim = ss
			break
		}
	}
	s.mu.Unlock()
	if victim == nil {
		return false
	}
	victim.end(errKilled())
	return true
}

// registerAdmin makes an admin session visible to shutdown.
func (s *Server) registerAdmin(ss *session) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.draining {
		return errShutdown()
	}
	s.admins[ss] = struct{}{}
	return nil
}

func (s *Server) unregisterAdmin(ss *session) {
	s.mu.Lock()
	delete(s.admins, ss)
	s.mu.Unlock()
}
