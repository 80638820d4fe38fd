package proxy

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5/pgproto3"
	"go.uber.org/zap"

	"github.com/pgbridge/pgbridge/internal/scram"
	"github.com/pgbridge/pgbridge/proxy/internal/wire"
	"github.com/pgbridge/pgbridge/routing"
)

const (
	codeSSLRequest    = 80877103
	codeGSSENCRequest = 80877104
	codeCancelRequest = 80877102
	protoMajor3       = 3
)

// cancelKey is the router-issued BackendKeyData of a session.
type cancelKey struct {
	pid    uint32
	secret uint32
}

// startupMessage is what the client asked for at startup.
type startupMessage struct {
	user     string
	database string
	params   map[string]string
}

// login runs everything from the first byte to ReadyForQuery: TLS
// negotiation, the StartupMessage, authentication, admission, and the replay
// of the tenant's ParameterStatus. It returns false when the connection is
// finished (a cancel request, a refusal).
func (ss *session) login(ctx context.Context) (bool, error) {
	cfg := ss.srv.config()
	var sm *startupMessage
	// As in PostgreSQL, each encryption request is answered once: after
	// an SSLRequest (accepted or not) another one is not a request any
	// more, and a GSSENCRequest may come after a refused SSLRequest or
	// before one, but not after TLS is on.
	sslDone, gssDone := false, false
	for sm == nil {
		payload, err := ss.readStartupPacket(cfg.Listen.MaxStartupPacket)
		if err != nil {
			return false, err
		}
		if len(payload) < 4 {
			return false, errProtocol("invalid startup packet")
		}
		code := binary.BigEndian.Uint32(payload)
		switch {
		case code == codeSSLRequest && !sslDone:
			sslDone = true
			srvTLS := ss.srv.tls.Load()
			if srvTLS == nil {
				if err := ss.writeClient([]byte{'N'}); err != nil {
					return false, err
				}
				continue
			}
			if err := ss.writeClient([]byte{'S'}); err != nil {
				return false, err
			}
			// Bytes sent before the TLS handshake would be trusted as if
			// they came through it (CVE-2021-23214): refuse them.
			if ss.crd.Buffered() != 0 {
				return false, errProtocol("received unencrypted data after SSL request")
			}
			tc := tls.Server(ss.nc, srvTLS)
			if err := tc.HandshakeContext(ctx); err != nil {
				return false, fmt.Errorf("tls handshake: %w", err)
			}
			ss.nc = tc
			ss.crd.Reset(tc)
			ss.tls = true
			gssDone = true
		case code == codeGSSENCRequest && !gssDone:
			gssDone = true
			if err := ss.writeClient([]byte{'N'}); err != nil {
				return false, err
			}
		case code == codeCancelRequest:
			ss.handleCancel(payload)
			return false, nil
		case code>>16 == protoMajor3:
			sm, err = ss.parseStartup(payload)
			if err != nil {
				return false, err
			}
		default:
			// PostgreSQL's answer, code and wording, to a version it
			// does not speak.
			return false, fatal(ReasonProtocol, "0A000", "", "unsupported frontend protocol %d.%d: server supports 3.0 to 3.0", code>>16, code&0xffff)
		}
	}
	ss.log = ss.log.With(zap.String("user", sm.user), zap.String("database", sm.database))

	if cfg.Listen.TLS.Mode == routing.ListenTLSRequire && !ss.tls {
		return false, fatal(ReasonTLSRequired, "28000", "Connect with sslmode=require (or stronger).",
			"TLS is required: this pgbridge refuses unencrypted logins")
	}

	if sm.database == routing.ReservedName {
		return ss.adminLogin(ctx, sm)
	}

	tenant, cred, known := cfg.LookupUser(sm.user)
	var ts *tenantState
	if known {
		ts = ss.srv.tenantState(tenant.Name)
		known = ts != nil
	}
	ss.ts = ts // refusals are counted for the tenant when the user is one of its logins
	allowed := known
	if !known {
		// An admin name asking for a tenant database runs its own exchange
		// (its salt) and fails after it, so that the salt a client sees
		// never depends on the database it names.
		cred, known = cfg.Admin.Users[sm.user]
	}
	if err := ss.checkPassword(ctx, sm.user, cred, known, allowed); err != nil {
		return false, err
	}
	tenant = ts.tenant()
	if !cfg.TenantForDatabase(tenant, sm.database) {
		return false, fatal(ReasonDatabaseMismatch, "3D000", fmt.Sprintf("User %q may only connect to database %q.", sm.user, tenant.Database),
			"database %q is not available to user %q", sm.database, sm.user)
	}
	ss.startup = sm
	ss.tracking = tenant.Policy.PoolMode == routing.PoolTransaction
	ss.stmts = make(map[string]*clientStmt)
	want, err := clientParams(sm.params, ss.tracking)
	if err != nil {
		return false, err
	}
	ss.log = ss.log.With(zap.String("tenant", tenant.Name))
	if lim := ts.logins.Load(); lim != nil && !lim.Allow() {
		return false, errConnectionRate(tenant.Name, tenant.Policy.ConnectionRate)
	}
	if err := ss.srv.register(ss); err != nil {
		return false, err
	}
	ss.registered = true

	params := ss.srv.pool.Params(tenant.Name)
	if params == nil {
		// No backend of this tenant was ever dialed: open one, both to learn
		// the real server parameters and to fail the login early if the
		// cluster cannot be reached.
		be, err := ss.srv.pool.Probe(ctx, tenant.Name)
		if err != nil {
			return false, ss.acquireError(err, true)
		}
		params = be.Params
		ss.srv.pool.Release(be)
	}
	for k, v := range want {
		if pv, ok := params[k]; ok && pv == v {
			delete(want, k) // already the backend's value (one it reports: an empty search_path is a value)
		}
	}
	ss.wantParams, ss.startParams = want, want
	ss.paramsKey, ss.paramsKeys = paramsKey(want)
	ss.mu.Lock()
	ss.idleSince = ss.srv.now()
	// The welcome tells the client's own spelling of a value the server
	// reports (DateStyle=iso, client_encoding=utf8), where PostgreSQL
	// tells its own (ISO, MDY; UTF8): the client learns the server's from
	// the first backend that serves it.
	for k := range want {
		for pk := range params {
			if strings.EqualFold(k, pk) {
				ss.toldCheck = true
			}
		}
	}
	ss.mu.Unlock()
	return true, ss.sendWelcome(params)
}

// checkPassword runs the SCRAM exchange for user against cred (a mock
// verifier when the user is not known), behind the failed-login throttle:
// a (client address, user) pair with many recent failures waits before it
// may try again, known user or not. Every wrong proof is the same 28P01,
// every malformed exchange the same 08P01. A login that may not use the
// database it asked for (allowed false: a tenant login asking for the
// console, an admin asking for a tenant database) runs the exchange with
// its own verifier and fails like a wrong password after it.
func (ss *session) checkPassword(ctx context.Context, user string, cred routing.Credential, known, allowed bool) error {
	tkey := throttleKey(ss.nc.RemoteAddr(), user)
	if wait := ss.srv.throttle.check(tkey, ss.srv.now()); wait > 0 {
		return errLoginThrottled(wait) // (early: before any SCRAM work)
	}
	reserved := false
	defer func() {
		if reserved {
			ss.srv.throttle.end(tkey)
		}
	}()
	// The proof is checked under a reservation: attempts of one pair
	// running at once count as if one came after another, so parallel
	// guesses get no more tries than serial ones; only the check itself is
	// serialised, not the exchange.
	gate := func() error {
		wait, err := ss.srv.throttle.begin(ctx, tkey, ss.srv.now)
		if err != nil {
			return err
		}
		if wait > 0 {
			return errLoginThrottled(wait)
		}
		reserved = true
		return nil
	}
	v := cred.Verifier
	if !known {
		v = scram.MockVerifier(user, ss.srv.mockSecret)
	}
	if err := ss.authenticate(v, gate); err != nil {
		// The answer must not depend on whether the user exists: a
		// malformed exchange is the same protocol error for both (as on
		// PostgreSQL, which also runs a mock exchange), and counts as a
		// failed attempt like a wrong password.
		var ce *clientError
		switch {
		case errors.Is(err, scram.ErrAuthFailed):
			ss.srv.throttle.fail(tkey, ss.srv.now())
			return errAuthFailed(user)
		case errors.As(err, &ce) && ce.code == "08P01":
			ss.srv.throttle.fail(tkey, ss.srv.now())
		}
		return err
	}
	if !known || !allowed {
		ss.held = nil // (no SASLFinal: the server would not have proved itself)
		ss.srv.throttle.fail(tkey, ss.srv.now())
		return errAuthFailed(user)
	}
	ss.srv.throttle.succeed(tkey)
	return nil
}

// clientParams collects the session parameters a client asked for in its
// startup packet, including "-c name=value" pairs of options. They are
// applied to whichever backend serves the client. pooled: transaction
// mode, where they stay on the backend between the client's transactions.
//
// Refused, besides the role: settings under which the router would read
// the client's SQL other than the server does (standard_conforming_strings
// off, a client-only encoding whose multibyte characters may end in a
// backslash), which could hide a statement from it; and, when pooled, an
// idle_session_timeout, which would end the shared backend while it waits
// in the pool for the next client.
func clientParams(p map[string]string, pooled bool) (map[string]string, error) {
	want := make(map[string]string, len(p))
	if v, ok := p["options"]; ok {
		// PostgreSQL applies the options' settings first, then the
		// startup packet's own, which win over them.
		opts, err := parseOptions(v)
		if err != nil {
			return nil, err
		}
		for ok, ov := range opts {
			want[ok] = ov
		}
	}
	for k, v := range p {
		switch k {
		case "replication":
			// Read as PostgreSQL does: "database" or a boolean
			// (parse_bool), anything else refused with its 22023.
			on, ok := pgBool(v)
			switch {
			case v == "database" || ok && on:
				return nil, fatal(ReasonProtocol, "0A000", "", "replication connections are not supported")
			case !ok:
				return nil, fatal(ReasonProtocol, "22023", "", "invalid value for parameter %q: %q", k, v)
			}
		case "options": // (above)
		default:
			if !validGUCName(k) {
				return nil, errProtocol("invalid startup parameter name %q", k)
			}
			setParamFold(want, k, v)
		}
	}
	for k := range want {
		// Names are case-insensitive, as PostgreSQL reads them.
		v := want[k]
		switch strings.ToLower(k) {
		case "role", "session_authorization":
			return nil, fatal(ReasonProtocol, "42501", "", "the startup parameter %q is not allowed: a tenant's sessions always run as its own role", k)
		case "standard_conforming_strings":
			if !boolOn(v) {
				return nil, fatal(ReasonProtocol, "0A000", "", "the startup parameter %s=%s is not supported: pgbridge reads SQL with standard_conforming_strings on", k, v)
			}
		case "client_encoding":
			if clientOnlyEncoding(v) {
				return nil, fatal(ReasonProtocol, "0A000", "Use UTF8, the server's encoding, or another encoding PostgreSQL can use on the server.",
					"the client encoding %q is not supported: pgbridge reads SQL in encodings whose characters never contain a quote or backslash byte", v)
			}
		case "search_path":
			if pooled && strings.Contains(strings.ToLower(v), "pg_temp") {
				return nil, fatal(ReasonProtocol, "0A000", "",
					"a search_path naming pg_temp is not supported in transaction pooling mode: it makes CREATE TABLE create temporary tables on a shared backend")
			}
		case "idle_session_timeout":
			if pooled && !zeroSetting(v) {
				return nil, fatal(ReasonProtocol, "0A000", "pgbridge closes idle clients itself (client_idle_timeout).",
					"the startup parameter idle_session_timeout is not supported in transaction pooling mode: the backend is shared between clients")
			}
		}
	}
	return want, nil
}

// boolOn reports whether v is a true boolean as PostgreSQL reads one: on,
// 1, or a prefix of true or yes, in any case.
func boolOn(v string) bool {
	on, _ := pgBool(strings.TrimSpace(v))
	return on
}

// pgBool reads v as PostgreSQL's parse_bool does: a prefix of true,
// false, yes or no, on, off (or of), 1 or 0, in any case; ok is false
// when v is none of them.
func pgBool(v string) (on, ok bool) {
	if v == "" {
		return false, false
	}
	l := strings.ToLower(v)
	switch {
	case strings.HasPrefix("true", l), strings.HasPrefix("yes", l), l == "on", l == "1":
		return true, true
	case strings.HasPrefix("false", l), strings.HasPrefix("no", l), l == "off", l == "of", l == "0":
		return false, true
	}
	return false, false
}

// zeroSetting reports whether a time setting's value is zero (0, 0s, 0ms,
// 0.0 min, ...).
func zeroSetting(v string) bool {
	v = strings.TrimRight(strings.TrimSpace(v), "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ ")
	f, err := strconv.ParseFloat(v, 64)
	return err == nil && f == 0
}

// clientOnlyEncoding reports whether name is one of PostgreSQL's
// client-only encodings (SJIS, SHIFT_JIS_2004, BIG5, GBK, UHC, GB18030,
// JOHAB, or an alias such as WIN932), whose multibyte characters can
// contain the bytes of a quote or backslash. Names are compared as
// PostgreSQL does: letters and digits only, case-insensitive.
func clientOnlyEncoding(name string) bool {
	clean := strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
			return r
		case r >= 'A' && r <= 'Z':
			return r + 'a' - 'A'
		}
		return -1
	}, name)
	switch clean {
	case "sjis", "shiftjis", "mskanji", "win932", "windows932", "shiftjis2004",
		"big5", "win950", "windows950", "gbk", "win936", "windows936", "cp936",
		"uhc", "win949", "windows949", "cp949", "gb18030", "johab":
		return true
	}
	return false
}

// parseOptions reads the "options" startup parameter as PostgreSQL's
// pg_split_opts does: words separated by white space (isspace: space, tab,
// newline, carriage return, vertical tab, form feed; a backslash escapes
// the next character, a trailing one is dropped), each "-c name=value",
// "-cname=value" or "--name=value".
func parseOptions(s string) (map[string]string, error) {
	var words []string
	var cur strings.Builder
	inWord := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\\':
			if i+1 < len(s) {
				i++
				cur.WriteByte(s[i])
			}
			inWord = true
		case c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f':
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		default:
			cur.WriteByte(c)
			inWord = true
		}
	}
	if inWord {
		words = append(words, cur.String())
	}
	out := make(map[string]string)
	for i := 0; i < len(words); i++ {
		w := words[i]
		var kv string
		switch {
		case w == "-c" && i+1 < len(words):
			i++
			kv = words[i]
		case strings.HasPrefix(w, "-c"):
			kv = w[2:]
		case strings.HasPrefix(w, "--"):
			kv = w[2:]
		default:
			return nil, errProtocol("unsupported option %q in startup options: only -c name=value is accepted", w)
		}
		k, v, ok := strings.Cut(kv, "=")
		k = strings.ReplaceAll(k, "-", "_")
		if !ok || !validGUCName(k) {
			return nil, errProtocol("invalid -c option %q in startup options", kv)
		}
		setParamFold(out, k, v) // the last setting of a name wins, in any case
	}
	return out, nil
}

// setParamFold sets the parameter k of m to v, dropping the same name in
// another case (names are case-insensitive): k's setting replaces it.
func setParamFold(m map[string]string, k, v string) {
	for o := range m {
		if o != k && strings.EqualFold(o, k) {
			delete(m, o)
		}
	}
	m[k] = v
}

func validGUCName(k string) bool {
	if k == "" || len(k) > 63 {
		return false
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		if !(c == '_' || c == '.' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || i > 0 && c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

// readStartupPacket reads one length-prefixed startup-phase packet.
func (ss *session) readStartupPacket(max int) ([]byte, error) {
	for ss.crd.Buffered() < 4 {
		if err := ss.crd.Fill(4); err != nil {
			return nil, err
		}
	}
	n := int(binary.BigEndian.Uint32(ss.crd.Bytes()))
	if n < 8 || n > max {
		return nil, errProtocol("invalid length of startup packet (%d bytes)", n) // (no limit: nothing is said of the configuration before login)
	}
	for ss.crd.Buffered() < n {
		if err := ss.crd.Fill(n); err != nil {
			return nil, err
		}
	}
	p := ss.crd.Bytes()[4:n]
	ss.crd.Discard(n)
	return p, nil
}

// parseStartup decodes a protocol 3.x StartupMessage. Newer minor versions
// and _pq_ protocol options are negotiated down to 3.0.
func (ss *session) parseStartup(payload []byte) (*startupMessage, error) {
	version := binary.BigEndian.Uint32(payload)
	sm := &startupMessage{params: make(map[string]string)}
	var unknownOpts []string
	rest := payload[4:]
	for {
		k, r, ok := cstring(rest)
		if !ok {
			return nil, errProtocol("invalid startup packet layout: expected terminator as last byte")
		}
		if k == "" {
			if len(r) != 0 {
				return nil, errProtocol("invalid startup packet layout: expected terminator as last byte")
			}
			break
		}
		v, r2, ok := cstring(r)
		if !ok {
			return nil, errProtocol("invalid startup packet layout: missing value for %q", k)
		}
		rest = r2
		switch {
		case k == "user":
			sm.user = v
		case k == "database":
			sm.database = v
		case strings.HasPrefix(k, "_pq_."):
			unknownOpts = append(unknownOpts, k)
		default:
			sm.params[k] = v
		}
	}
	if sm.user == "" {
		return nil, fatal(ReasonProtocol, "28000", "", "no PostgreSQL user name specified in startup packet")
	}
	if sm.database == "" {
		sm.database = sm.user
	}
	if version&0xffff != 0 || len(unknownOpts) > 0 {
		msg := &pgproto3.NegotiateProtocolVersion{NewestMinorProtocol: 0, UnrecognizedOptions: unknownOpts}
		buf, err := msg.Encode(nil)
		if err != nil {
			return nil, err
		}
		if err := ss.writeClient(buf); err != nil {
			return nil, err
		}
	}
	return sm, nil
}

func cstring(b []byte) (string, []byte, bool) {
	for i, c := range b {
		if c == 0 {
			return string(b[:i]), b[i+1:], true
		}
	}
	return "", nil, false
}

// authenticate runs a SCRAM-SHA-256 exchange against v.
func (ss *session) authenticate(v scram.Verifier, gate func() error) error {
	srv := scram.NewServer(v)
	if err := ss.send(&pgproto3.AuthenticationSASL{AuthMechanisms: []string{"SCRAM-SHA-256"}}); err != nil {
		return err
	}
	f, err := ss.readAuthFrame()
	if err != nil {
		return err
	}
	var init pgproto3.SASLInitialResponse
	if err := init.Decode(f[5:]); err != nil || init.AuthMechanism != "SCRAM-SHA-256" {
		return errProtocol("expected SASLInitialResponse with SCRAM-SHA-256")
	}
	// pgproto3 skips the data's own length; PostgreSQL holds the message
	// to it (-1 is no data).
	declared := int32(binary.BigEndian.Uint32(f[5+len(init.AuthMechanism)+1:]))
	if declared != -1 && int(declared) != len(init.Data) || declared == -1 && len(init.Data) != 0 {
		return errProtocol("invalid message format")
	}
	first, err := srv.ClientFirst(init.Data)
	if err != nil {
		return errProtocol("malformed SCRAM message")
	}
	if err := ss.send(&pgproto3.AuthenticationSASLContinue{Data: first}); err != nil {
		return err
	}
	if f, err = ss.readAuthFrame(); err != nil {
		return err
	}
	var resp pgproto3.SASLResponse
	if err := resp.Decode(f[5:]); err != nil {
		return errProtocol("expected SASLResponse")
	}
	if err := gate(); err != nil {
		return err
	}
	final, err := srv.ClientFinal(resp.Data)
	if err != nil {
		if errors.Is(err, scram.ErrAuthFailed) {
			return err
		}
		return errProtocol("malformed SCRAM message")
	}
	ss.held, _ = (&pgproto3.AuthenticationSASLFinal{Data: final}).Encode(nil)
	return nil
}

func (ss *session) readAuthFrame() ([]byte, error) {
	f, err := ss.crd.ReadFrame(8192)
	if errors.Is(err, wire.ErrFrameTooLarge) || errors.Is(err, wire.ErrBadLength) {
		return nil, errProtocol("invalid password message length")
	}
	if err != nil {
		return nil, err
	}
	if f[0] != 'p' {
		return nil, errProtocol("expected password response, got message type %q", f[0])
	}
	return f, nil
}

// sendWelcome finishes the login: the held SASL final message,
// AuthenticationOk, the tenant's real ParameterStatus values, the router's
// own cancel key, ReadyForQuery, in one write.
func (ss *session) sendWelcome(params map[string]string) error {
	b := append(ss.wbuf[:0], ss.held...)
	ss.held = nil
	b, _ = (&pgproto3.AuthenticationOk{}).Encode(b)
	told := make(map[string]string, len(params))
	for k, v := range params {
		for w, wv := range ss.wantParams {
			if strings.EqualFold(w, k) {
				v = wv // (the server's name, the client's value)
			}
		}
		told[k] = v
		b, _ = (&pgproto3.ParameterStatus{Name: k, Value: v}).Encode(b)
	}
	ss.mu.Lock()
	ss.told = told
	ss.mu.Unlock()
	key := make([]byte, 4)
	binary.BigEndian.PutUint32(key, ss.key.secret)
	b, _ = (&pgproto3.BackendKeyData{ProcessID: ss.key.pid, SecretKey: key}).Encode(b)
	b, _ = (&pgproto3.ReadyForQuery{TxStatus: 'I'}).Encode(b)
	ss.wbuf = b[:0]
	return ss.writeClient(b)
}

func (ss *session) send(msg pgproto3.BackendMessage) error {
	b, err := msg.Encode(ss.wbuf[:0])
	if err != nil {
		return err
	}
	ss.wbuf = b[:0]
	return ss.writeClient(b)
}

func newCancelKey() cancelKey {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return cancelKey{pid: binary.BigEndian.Uint32(b[:4]) &^ (1 << 31), secret: binary.BigEndian.Uint32(b[4:])}
}

// handleCancel forwards a CancelRequest to the backend that serves the
// session owning the key, if that session is running something.
func (ss *session) handleCancel(payload []byte) {
	if len(payload) != 12 {
		return // protocol 3.2 longer keys are never issued by us
	}
	k := cancelKey{pid: binary.BigEndian.Uint32(payload[4:8]), secret: binary.BigEndian.Uint32(payload[8:12])}
	target := ss.srv.lookupCancel(k)
	if target == nil {
		ss.log.Debug("cancel request for unknown key")
		return
	}
	target.cancelRunning()
}
