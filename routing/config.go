package routing

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/pgbridge/pgbridge/internal/scram"
)

// ReservedName is the database name of the admin console. No tenant may be
// called so or use it as its database.
const ReservedName = "pgbridge"

var tenantNameRE = regexp.MustCompile(`^[a-zA-Z0-9_][a-zA-Z0-9_.-]{0,62}$`)

// Built-in defaults of the configuration contract.
func defaultConfig() *Config {
	return &Config{
		Listen: Listen{
			Address:          "127.0.0.1:6432",
			LoginTimeout:     10 * time.Second,
			MaxStartupPacket: 10000,
			ShutdownTimeout:  30 * time.Second,
		},
		Backend: Backend{
			Port:           5432,
			TLS:            BackendTLS{Mode: BackendTLSPrefer},
			MaxConnections: 100,
			ConnectTimeout: 5 * time.Second,
			ResumeTimeout:  30 * time.Second,
			IdleTimeout:    5 * time.Minute,
			MaxLifetime:    time.Hour,
		},
		Log:     Log{Level: "info", Format: "auto"},
		Metrics: Metrics{TenantLabels: true},
		Defaults: Policy{
			PoolMode:             PoolTransaction,
			PoolSize:             10,
			MaxClientConnections: 200,
			PoolWaitTimeout:      5 * time.Second,
			MaxMessageSize:       64 << 20,
		},
		Tenants: map[string]*Tenant{},
		users:   map[string]*Tenant{},
	}
}

// Problem is one thing wrong with a configuration file.
type Problem struct {
	Path    string // dotted key path, e.g. "tenants.acme.pool_size"; "" for the whole file
	Line    int    // 1-based line in the file, 0 when unknown
	Message string
}

func (p Problem) String() string {
	s := p.Message
	if p.Path != "" {
		s = p.Path + ": " + s
	}
	if p.Line > 0 {
		s += fmt.Sprintf(" (line %d)", p.Line)
	}
	return s
}

// ConfigError is returned by Load and Parse when the file is not a valid
// configuration. It lists every problem found, sorted by key path.
type ConfigError struct {
	Problems []Problem
}

func (e *ConfigError) Error() string {
	lines := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		lines[i] = p.String()
	}
	return strings.Join(lines, "\n")
}

type problems struct {
	list  []Problem
	lines map[string]int // key path -> line, from the shape check
}

// add records a problem. With line 0 the line of the key (or of its
// nearest enclosing key) is used.
func (ps *problems) add(path string, line int, format string, args ...any) {
	if line == 0 {
		for p := path; p != ""; {
			if l, ok := ps.lines[p]; ok {
				line = l
				break
			}
			i := strings.LastIndexByte(p, '.')
			if i < 0 {
				break
			}
			p = p[:i]
		}
	}
	ps.list = append(ps.list, Problem{Path: path, Line: line, Message: fmt.Sprintf(format, args...)})
}

func (ps *problems) err() error {
	if len(ps.list) == 0 {
		return nil
	}
	list := append([]Problem(nil), ps.list...)
	sort.SliceStable(list, func(i, j int) bool { return list[i].Path < list[j].Path })
	out := list[:0]
	for i, p := range list {
		if i > 0 && p == out[len(out)-1] {
			continue
		}
		out = append(out, p)
	}
	return &ConfigError{Problems: out}
}

func configErr(line int, format string, args ...any) error {
	return &ConfigError{Problems: []Problem{{Line: line, Message: fmt.Sprintf(format, args...)}}}
}

// Load reads the configuration file at path and parses it with the process
// environment. Relative file names inside the configuration (certificates,
// secret files) are resolved against the directory of path.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read configuration: %w", err)
	}
	return parse(data, os.LookupEnv, filepath.Dir(path))
}

// Parse parses, expands, defaults and validates a configuration. env looks
// up ${VAR} references (os.LookupEnv in production; nil means
// os.LookupEnv). Relative file names inside the configuration are resolved
// against the working directory. On failure the error is a *ConfigError
// listing every problem found.
func Parse(data []byte, env func(string) (string, bool)) (*Config, error) {
	return parse(data, env, "")
}

func parse(data []byte, env func(string) (string, bool), dir string) (*Config, error) {
	if env == nil {
		env = os.LookupEnv
	}
	raw, shape, err := decode(data)
	if err != nil {
		return nil, err
	}
	l := &loader{env: env, dir: dir, probs: *shape}
	cfg := l.build(raw)
	if err := l.probs.err(); err != nil {
		return nil, err
	}
	return cfg, nil
}

// decode turns the file into raw structs: exactly one YAML document, a
// mapping at the top, no unknown or repeated keys anywhere.
func decode(data []byte) (*rawConfig, *problems, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, nil, configErr(0, "the configuration is empty")
		}
		return nil, nil, yamlSyntaxErr(err)
	}
	var extra yaml.Node
	switch err := dec.Decode(&extra); {
	case err == nil:
		return nil, nil, configErr(extra.Line, "the file holds more than one YAML document; a configuration is exactly one")
	case !errors.Is(err, io.EOF):
		return nil, nil, yamlSyntaxErr(err)
	}
	top := &doc
	if top.Kind == yaml.DocumentNode {
		if len(top.Content) == 0 {
			return nil, nil, configErr(0, "the configuration is empty")
		}
		top = top.Content[0]
	}
	if top.Kind == yaml.ScalarNode && top.ShortTag() == "!!null" {
		return nil, nil, configErr(0, "the configuration is empty")
	}
	if top.Kind != yaml.MappingNode {
		return nil, nil, configErr(top.Line, "the top level must be a mapping of keys (listen:, backend:, tenants:, ...)")
	}

	ps := &problems{lines: map[string]int{}}
	sc := &shapeChecker{lines: ps.lines, probs: ps}
	sc.check(top, reflect.TypeOf(rawConfig{}), "")
	var raw rawConfig
	if len(ps.list) > 0 {
		// Keep going with what can be decoded, so that the other problems
		// of the file are reported in the same run.
		if err := noPanic(func() error { return top.Decode(&raw) }); errors.Is(err, errDecodePanic) {
			ps.add("", 0, "%s", err)
		}
		return &raw, ps, nil
	}
	// The shape check should have caught everything; the strict decode is
	// the authority all the same.
	strict := yaml.NewDecoder(bytes.NewReader(data))
	strict.KnownFields(true)
	if err := noPanic(func() error { return strict.Decode(&raw) }); err != nil {
		return nil, nil, configErr(0, "%s", strings.TrimPrefix(err.Error(), "yaml: "))
	}
	return &raw, ps, nil
}

// maxServerTimeout is the longest timeout PostgreSQL accepts (INT_MAX ms).
const maxServerTimeout = (1<<31 - 1) * time.Millisecond

// errDecodePanic marks a YAML decode that panicked.
var errDecodePanic = errors.New("the YAML decoder failed on this file (a merge key, <<, next to a key that is a list or mapping?)")

// noPanic runs a YAML decode, turning a panic of the decoder (yaml.v3
// re-raises some, such as a merge into a mapping with a key that cannot be
// hashed) into an error: a bad file must never stop a running router.
func noPanic(decode func() error) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("%w: %v", errDecodePanic, p)
		}
	}()
	return decode()
}

func yamlSyntaxErr(err error) error {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	return configErr(0, "invalid YAML: %s", msg)
}

// kp is a key path twice: as shown in messages ("tenants.acme.pool_size")
// and as a pattern with map keys replaced by "*" ("tenants.*.pool_size"),
// which is what the unsupported-keys table matches.
type kp struct{ path, pattern string }

func root(name string) kp          { return kp{name, name} }
func (p kp) key(name string) kp    { return kp{joinPath(p.path, name), p.pattern + "." + name} }
func (p kp) item(mapKey string) kp { return kp{joinPath(p.path, mapKey), p.pattern + ".*"} }

// loader converts raw structs into a Config, collecting every problem.
type loader struct {
	env   func(string) (string, bool)
	dir   string
	probs problems
}

func (l *loader) errorf(p kp, line int, format string, args ...any) {
	l.probs.add(p.path, line, format, args...)
}

// text returns the expanded value of s; false when s is unset or invalid.
func (l *loader) text(p kp, s *scalar) (string, bool) {
	if s == nil || s.bad {
		return "", false
	}
	v, err := expandEnv(s.Value, l.env)
	if err != nil {
		l.errorf(p, s.Line, "%v", err)
		return "", false
	}
	return v, true
}

func (l *loader) setString(p kp, s *scalar, dst *string) bool {
	v, ok := l.text(p, s)
	if !ok {
		return false
	}
	if strings.IndexByte(v, 0) >= 0 {
		l.errorf(p, s.Line, "must not contain a NUL byte")
		return false
	}
	*dst = v
	return true
}

// setFile is setString for a file name: relative names are resolved
// against the configuration's directory.
func (l *loader) setFile(p kp, s *scalar, dst *string) bool {
	var v string
	if !l.setString(p, s, &v) {
		return false
	}
	*dst = l.filePath(v)
	return true
}

func (l *loader) filePath(name string) string {
	if name == "" || l.dir == "" || filepath.IsAbs(name) {
		return name
	}
	return filepath.Join(l.dir, name)
}

func (l *loader) setInt(p kp, s *scalar, dst *int, lo, hi int) bool {
	v, ok := l.text(p, s)
	if !ok {
		return false
	}
	n, err := strconv.Atoi(strings.TrimSpace(v))
	if err != nil {
		l.errorf(p, s.Line, "%q is not a whole number", v)
		return false
	}
	if n < lo || n > hi {
		switch {
		case hi == math.MaxInt && lo == 0:
			l.errorf(p, s.Line, "%d must not be negative", n)
		case hi == math.MaxInt:
			l.errorf(p, s.Line, "%d must be at least %d", n, lo)
		default:
			l.errorf(p, s.Line, "%d must be between %d and %d", n, lo, hi)
		}
		return false
	}
	*dst = n
	return true
}

func (l *loader) setRate(p kp, s *scalar, dst *float64) bool {
	v, ok := l.text(p, s)
	if !ok {
		return false
	}
	f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		l.errorf(p, s.Line, "%q is not a number", v)
		return false
	}
	if f < 0 {
		l.errorf(p, s.Line, "%v must not be negative", f)
		return false
	}
	*dst = f
	return true
}

func (l *loader) setDuration(p kp, s *scalar, dst *time.Duration) bool {
	v, ok := l.text(p, s)
	if !ok {
		return false
	}
	d, err := time.ParseDuration(strings.TrimSpace(v))
	if err != nil {
		l.errorf(p, s.Line, "%q is not a duration (write it with a unit: 500ms, 5s, 1m, 1h)", v)
		return false
	}
	if d < 0 {
		l.errorf(p, s.Line, "%s must not be negative", v)
		return false
	}
	*dst = d
	return true
}

func (l *loader) setBool(p kp, s *scalar, dst *bool) bool {
	v, ok := l.text(p, s)
	if !ok {
		return false
	}
	b, err := strconv.ParseBool(strings.TrimSpace(v))
	if err != nil {
		l.errorf(p, s.Line, "%q is not true or false", v)
		return false
	}
	*dst = b
	return true
}

func setEnum[T ~string](l *loader, p kp, s *scalar, dst *T, allowed ...T) bool {
	v, ok := l.text(p, s)
	if !ok {
		return false
	}
	v = strings.TrimSpace(v)
	for _, a := range allowed {
		if T(v) == a {
			*dst = a
			return true
		}
	}
	names := make([]string, len(allowed))
	for i, a := range allowed {
		names[i] = string(a)
	}
	l.errorf(p, s.Line, "%q is not one of %s", v, strings.Join(names, ", "))
	return false
}

// readSecretFile reads a secret from the file named by s. Trailing
// whitespace (the newline editors and `echo` add) is removed.
func (l *loader) readSecretFile(p kp, s *scalar) (string, bool) {
	var name string
	if !l.setFile(p, s, &name) {
		return "", false
	}
	if name == "" {
		l.errorf(p, s.Line, "empty file name")
		return "", false
	}
	data, err := os.ReadFile(name)
	if err != nil {
		l.errorf(p, s.Line, "cannot read secret file: %v", err)
		return "", false
	}
	v := strings.TrimRight(string(data), " \t\r\n")
	if v == "" {
		l.errorf(p, s.Line, "secret file %s is empty", name)
		return "", false
	}
	return v, true
}

// secret returns a secret given either inline (key) or in a file
// (key_file). present is false when neither is set.
func (l *loader) secret(p kp, key string, inline, file *scalar) (val string, present, ok bool) {
	switch {
	case inline != nil && file != nil:
		l.errorf(p.key(key+"_file"), file.Line, "set either %s or %s_file, not both", key, key)
		return "", true, false
	case file != nil:
		v, ok := l.readSecretFile(p.key(key+"_file"), file)
		return v, true, ok
	case inline != nil:
		kp := p.key(key)
		v, ok := l.text(kp, inline)
		if ok && v == "" {
			l.errorf(kp, inline.Line, "is empty")
			ok = false
		}
		return v, true, ok
	}
	return "", false, false
}

// credential converts one login's {scram|scram_file|password|password_file}.
func (l *loader) credential(p kp, rc *rawCredential) (Credential, bool) {
	if rc == nil {
		rc = &rawCredential{}
	}
	var set []string
	for _, f := range []struct {
		name string
		s    *scalar
	}{{"scram", rc.Scram}, {"scram_file", rc.ScramFile}, {"password", rc.Password}, {"password_file", rc.PasswordFile}} {
		if f.s != nil {
			set = append(set, f.name)
		}
	}
	switch len(set) {
	case 0:
		l.errorf(p, 0, "no credential: set one of scram, scram_file, password, password_file")
		return Credential{}, false
	case 1:
	default:
		l.errorf(p, 0, "set exactly one of scram, scram_file, password, password_file (found %s)", strings.Join(set, ", "))
		return Credential{}, false
	}
	switch {
	case rc.Scram != nil || rc.ScramFile != nil:
		var text string
		var ok bool
		var at kp
		var line int
		if rc.Scram != nil {
			at, line = p.key("scram"), rc.Scram.Line
			text, ok = l.text(at, rc.Scram)
		} else {
			at, line = p.key("scram_file"), rc.ScramFile.Line
			text, ok = l.readSecretFile(at, rc.ScramFile)
		}
		if !ok {
			return Credential{}, false
		}
		text = strings.TrimSpace(text)
		v, err := scram.ParseVerifier(text)
		if err == nil && v.IsZero() {
			err = errors.New("empty verifier")
		}
		if err != nil {
			// Never echo the secret, even if a parser message quoted it.
			why := strings.TrimPrefix(err.Error(), "scram: ")
			if text != "" && strings.Contains(why, text) {
				why = "malformed"
			}
			l.errorf(at, line, "not a valid SCRAM verifier (%s); want SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>", why)
			return Credential{}, false
		}
		return Credential{Verifier: v}, true
	default:
		var pw string
		var ok bool
		var at kp
		var line int
		if rc.Password != nil {
			at, line = p.key("password"), rc.Password.Line
			pw, ok = l.text(at, rc.Password)
			if ok && pw == "" {
				l.errorf(at, line, "is empty")
				ok = false
			}
		} else {
			at, line = p.key("password_file"), rc.PasswordFile.Line
			pw, ok = l.readSecretFile(at, rc.PasswordFile)
		}
		if !ok {
			return Credential{}, false
		}
		v, err := passwordVerifier(p.path, pw)
		if err != nil {
			l.errorf(at, line, "cannot derive a SCRAM verifier: %v", err)
			return Credential{}, false
		}
		return Credential{Verifier: v}, true
	}
}

// logins converts a map of login name -> credential.
func (l *loader) logins(p kp, raw map[string]*rawCredential) map[string]Credential {
	out := make(map[string]Credential, len(raw))
	for _, name := range sortedKeys(raw) {
		up := p.item(name)
		switch {
		case name == "":
			l.errorf(up, 0, "a user name must not be empty")
			continue
		case strings.IndexByte(name, 0) >= 0:
			l.errorf(up, 0, "a user name must not contain a NUL byte")
			continue
		}
		if c, ok := l.credential(up, raw[name]); ok {
			out[name] = c
		}
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func (l *loader) build(r *rawConfig) *Config {
	c := defaultConfig()
	l.listen(root("listen"), r.Listen, &c.Listen)
	l.admin(root("admin"), r.Admin, &c.Admin)
	budgetOK := l.backend(root("backend"), r.Backend, &c.Backend)
	l.log(root("log"), r.Log, &c.Log)
	if r.Metrics != nil {
		l.setBool(root("metrics").key("tenant_labels"), r.Metrics.TenantLabels, &c.Metrics.TenantLabels)
	}

	dp := root("defaults")
	setP := l.policy(dp, r.Defaults, &c.Defaults)
	budget := c.Backend.MaxConnections
	l.checkPolicy(dp, c.Defaults, setP, budgetOK, budget, true)

	tp := root("tenants")
	if len(r.Tenants) == 0 {
		l.errorf(tp, 0, "at least one tenant is required")
	}
	dbOwner := map[string]string{}
	minSum, resSum, iam := 0, 0, false
	for _, name := range sortedKeys(r.Tenants) {
		t := l.tenant(tp.item(name), name, r.Tenants[name], c, dbOwner, budgetOK, budget)
		minSum += t.Policy.MinPoolSize
		resSum += t.Policy.ReservedConnections
		iam = iam || t.BackendAuth == BackendAuthIAM
		c.Tenants[name] = t
	}
	if budgetOK && minSum > budget {
		l.errorf(root("backend").key("max_connections"), 0,
			"the tenants' min_pool_size values add up to %d, more than backend.max_connections=%d", minSum, budget)
	}
	if budgetOK && resSum > budget {
		l.errorf(root("backend").key("max_connections"), 0,
			"the tenants' reserved_connections values add up to %d, more than backend.max_connections=%d", resSum, budget)
	}
	if iam && c.Backend.AWSRegion == "" {
		l.errorf(root("backend").key("aws_region"), 0, "required when a tenant uses backend_auth: iam")
	}
	if iam && c.Backend.TLS.Mode == BackendTLSDisable {
		l.errorf(root("backend").key("tls").key("mode"), 0, "IAM authentication needs TLS to the backend; use require, verify-ca or verify-full")
	}
	return c
}

func (l *loader) listen(p kp, r *rawListen, dst *Listen) {
	if r == nil {
		r = &rawListen{}
	}
	if l.setString(p.key("address"), r.Address, &dst.Address) {
		if dst.Address == "" {
			l.errorf(p.key("address"), r.Address.Line, "must not be empty")
		} else if _, port, err := net.SplitHostPort(dst.Address); err != nil {
			l.errorf(p.key("address"), r.Address.Line, "%q is not host:port", dst.Address)
		} else if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
			l.errorf(p.key("address"), r.Address.Line, "%q has an invalid port", dst.Address)
		}
	}
	l.setInt(p.key("max_client_connections"), r.MaxClientConnections, &dst.MaxClientConnections, 0, math.MaxInt)
	if l.setDuration(p.key("login_timeout"), r.LoginTimeout, &dst.LoginTimeout) && dst.LoginTimeout == 0 {
		l.errorf(p.key("login_timeout"), r.LoginTimeout.Line, "must be more than 0 (a login cannot be allowed forever)")
	}
	l.setInt(p.key("max_startup_packet"), r.MaxStartupPacket, &dst.MaxStartupPacket, 1, math.MaxInt)
	l.setDuration(p.key("shutdown_timeout"), r.ShutdownTimeout, &dst.ShutdownTimeout)

	tp := p.key("tls")
	rt := r.TLS
	if rt == nil {
		rt = &rawListenTLS{}
	}
	t := &dst.TLS
	certOK := l.setFile(tp.key("cert_file"), rt.CertFile, &t.CertFile)
	keyOK := l.setFile(tp.key("key_file"), rt.KeyFile, &t.KeyFile)
	if !setEnum(l, tp.key("mode"), rt.Mode, &t.Mode, ListenTLSDisable, ListenTLSAllow, ListenTLSRequire) {
		t.Mode = ListenTLSDisable
		if t.CertFile != "" {
			t.Mode = ListenTLSAllow
		}
		if rt.Mode != nil { // invalid mode, already reported
			return
		}
	}
	switch {
	case rt.CertFile != nil && !certOK, rt.KeyFile != nil && !keyOK:
		// already reported
	case t.CertFile != "" && t.KeyFile == "":
		l.errorf(tp.key("key_file"), 0, "required when cert_file is set")
	case t.CertFile == "" && t.KeyFile != "":
		l.errorf(tp.key("cert_file"), 0, "required when key_file is set")
	case t.CertFile == "" && t.Mode != ListenTLSDisable:
		l.errorf(tp.key("mode"), 0, "%s needs cert_file and key_file", t.Mode)
	case t.CertFile != "":
		if _, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile); err != nil {
			l.errorf(tp.key("cert_file"), 0, "cannot load the certificate and key: %v", err)
		}
	}
}

func (l *loader) admin(p kp, r *rawAdmin, dst *Admin) {
	if r == nil {
		return
	}
	l.setString(p.key("address"), r.Address, &dst.Address)
	if r.Users != nil {
		dst.Users = l.logins(p.key("users"), r.Users)
	}
}

// backend converts the backend section; it reports whether
// max_connections is usable for the budget checks.
func (l *loader) backend(p kp, r *rawBackend, dst *Backend) (budgetOK bool) {
	if r == nil {
		r = &rawBackend{}
	}
	hp := p.key("host")
	if r.Host == nil {
		l.errorf(hp, 0, "required")
	} else if l.setString(hp, r.Host, &dst.Host) && dst.Host == "" {
		l.errorf(hp, r.Host.Line, "must not be empty")
	}
	l.setInt(p.key("port"), r.Port, &dst.Port, 1, 65535)
	budgetOK = l.setInt(p.key("max_connections"), r.MaxConnections, &dst.MaxConnections, 1, math.MaxInt) || r.MaxConnections == nil
	l.setInt(p.key("max_active_transactions"), r.MaxActiveTx, &dst.MaxActiveTransactions, 0, math.MaxInt)
	l.setDuration(p.key("connect_timeout"), r.ConnectTimeout, &dst.ConnectTimeout)
	l.setDuration(p.key("resume_timeout"), r.ResumeTimeout, &dst.ResumeTimeout)
	l.setDuration(p.key("idle_timeout"), r.IdleTimeout, &dst.IdleTimeout)
	l.setDuration(p.key("max_lifetime"), r.MaxLifetime, &dst.MaxLifetime)
	l.setString(p.key("aws_region"), r.AWSRegion, &dst.AWSRegion)

	tp := p.key("tls")
	rt := r.TLS
	if rt == nil {
		rt = &rawBackendTLS{}
	}
	modeOK := setEnum(l, tp.key("mode"), rt.Mode, &dst.TLS.Mode,
		BackendTLSDisable, BackendTLSPrefer, BackendTLSRequire, BackendTLSVerifyCA, BackendTLSVerifyFull)
	caOK := l.setFile(tp.key("ca_file"), rt.CAFile, &dst.TLS.CAFile)
	switch {
	case rt.CAFile != nil && !caOK:
	case dst.TLS.CAFile != "":
		pem, err := os.ReadFile(dst.TLS.CAFile)
		if err != nil {
			l.errorf(tp.key("ca_file"), 0, "cannot read: %v", err)
		} else if !x509.NewCertPool().AppendCertsFromPEM(pem) {
			l.errorf(tp.key("ca_file"), 0, "no PEM certificate found in %s", dst.TLS.CAFile)
		}
	case modeOK || rt.Mode == nil:
		if dst.TLS.Mode == BackendTLSVerifyCA || dst.TLS.Mode == BackendTLSVerifyFull {
			l.errorf(tp.key("ca_file"), 0, "required when mode is %s", dst.TLS.Mode)
		}
	}
	return budgetOK
}

func (l *loader) log(p kp, r *rawLog, dst *Log) {
	if r == nil {
		return
	}
	setEnum(l, p.key("level"), r.Level, &dst.Level, "debug", "info", "warn", "error")
	setEnum(l, p.key("format"), r.Format, &dst.Format, "json", "console", "auto")
	l.setBool(p.key("queries"), r.Queries, &dst.Queries)
}

// policySet tells which policy keys a section set successfully.
type policySet struct{ poolSize, minPoolSize, reserved bool }

// policy applies the keys r sets on top of dst.
func (l *loader) policy(p kp, r *rawPolicy, dst *Policy) policySet {
	var s policySet
	if r == nil {
		return s
	}
	setEnum(l, p.key("pool_mode"), r.PoolMode, &dst.PoolMode, PoolTransaction, PoolSession)
	s.poolSize = l.setInt(p.key("pool_size"), r.PoolSize, &dst.PoolSize, 1, math.MaxInt)
	s.minPoolSize = l.setInt(p.key("min_pool_size"), r.MinPoolSize, &dst.MinPoolSize, 0, math.MaxInt)
	l.setInt(p.key("max_client_connections"), r.MaxClientConnections, &dst.MaxClientConnections, 0, math.MaxInt)
	l.setDuration(p.key("pool_wait_timeout"), r.PoolWaitTimeout, &dst.PoolWaitTimeout)
	// Both go to PostgreSQL at dial, which takes at most 2^31-1 ms (the
	// second as twice the value and a second, as a backstop).
	if l.setDuration(p.key("statement_timeout"), r.StatementTimeout, &dst.StatementTimeout) && dst.StatementTimeout > maxServerTimeout {
		l.errorf(p.key("statement_timeout"), r.StatementTimeout.Line, "%s is more than PostgreSQL accepts (%s)", dst.StatementTimeout, maxServerTimeout)
	}
	l.setDuration(p.key("max_statement_timeout"), r.MaxStatementTimeout, &dst.MaxStatementTimeout)
	if l.setDuration(p.key("idle_in_transaction_timeout"), r.IdleInTransactionTimeout, &dst.IdleInTransactionTimeout) && dst.IdleInTransactionTimeout > maxServerTimeout/2-time.Second {
		l.errorf(p.key("idle_in_transaction_timeout"), r.IdleInTransactionTimeout.Line, "%s is too long: the backstop the router gives PostgreSQL (twice it) would be more than PostgreSQL accepts; at most %s", dst.IdleInTransactionTimeout, (maxServerTimeout/2 - time.Second).Truncate(time.Hour))
	}
	l.setDuration(p.key("client_idle_timeout"), r.ClientIdleTimeout, &dst.ClientIdleTimeout)
	l.setRate(p.key("query_rate"), r.QueryRate, &dst.QueryRate)
	l.setInt(p.key("query_burst"), r.QueryBurst, &dst.QueryBurst, 0, math.MaxInt)
	l.setRate(p.key("connection_rate"), r.ConnectionRate, &dst.ConnectionRate)
	s.reserved = l.setInt(p.key("reserved_connections"), r.ReservedConnections, &dst.ReservedConnections, 0, math.MaxInt)
	l.setInt(p.key("max_message_size"), r.MaxMessageSize, &dst.MaxMessageSize, 1024, 1<<30)
	return s
}

// checkPolicy checks the relations between an effective policy's values
// and the backend budget. A tenant is only blamed for values it set
// itself; inherited ones are checked (and blamed) once, under defaults.
func (l *loader) checkPolicy(p kp, pol Policy, s policySet, budgetOK bool, budget int, isDefaults bool) {
	if pol.MinPoolSize > pol.PoolSize && (isDefaults || s.minPoolSize || s.poolSize) {
		at := p.key("min_pool_size")
		if !s.minPoolSize && s.poolSize {
			at = p.key("pool_size")
		}
		l.errorf(at, 0, "min_pool_size %d is larger than pool_size %d", pol.MinPoolSize, pol.PoolSize)
	}
	if pol.ReservedConnections > pol.PoolSize && (isDefaults || s.reserved || s.poolSize) {
		at := p.key("reserved_connections")
		if !s.reserved && s.poolSize {
			at = p.key("pool_size")
		}
		l.errorf(at, 0, "reserved_connections %d is larger than pool_size %d", pol.ReservedConnections, pol.PoolSize)
	}
	if budgetOK && pol.PoolSize > budget && (isDefaults || s.poolSize) {
		l.errorf(p.key("pool_size"), 0, "%d is larger than the whole backend budget backend.max_connections=%d", pol.PoolSize, budget)
	}
}

func (l *loader) tenant(p kp, name string, r *rawTenant, c *Config, dbOwner map[string]string, budgetOK bool, budget int) *Tenant {
	if r == nil {
		r = &rawTenant{}
	}
	t := &Tenant{Name: name, Policy: c.Defaults}
	switch {
	case name == ReservedName:
		l.errorf(p, 0, "the name %s is reserved for the admin console", ReservedName)
	case !tenantNameRE.MatchString(name):
		l.errorf(p, 0, "invalid tenant name: use 1 to 63 letters, digits, '_', '.' or '-', not starting with '.' or '-'")
	}

	dp := p.key("database")
	if l.setString(dp, r.Database, &t.Database) || r.Database == nil {
		switch owner, taken := dbOwner[t.Database]; {
		case t.Database == "":
			l.errorf(dp, 0, "required")
		case t.Database == ReservedName:
			l.errorf(dp, 0, "the database name %s is reserved for the admin console", ReservedName)
		case taken:
			l.errorf(dp, 0, "database %s already belongs to tenant %s", t.Database, owner)
		default:
			dbOwner[t.Database] = name
		}
	}
	up := p.key("backend_user")
	if (l.setString(up, r.BackendUser, &t.BackendUser) || r.BackendUser == nil) && t.BackendUser == "" {
		l.errorf(up, 0, "required")
	}
	t.BackendAuth = BackendAuthPassword
	setEnum(l, p.key("backend_auth"), r.BackendAuth, &t.BackendAuth, BackendAuthPassword, BackendAuthIAM)
	pw, present, _ := l.secret(p, "backend_password", r.BackendPassword, r.BackendPasswordFile)
	switch {
	case t.BackendAuth == BackendAuthIAM && present:
		l.errorf(p.key("backend_password"), 0, "not used with backend_auth: iam; remove it")
	case t.BackendAuth != BackendAuthIAM && !present:
		l.errorf(p.key("backend_password"), 0, "missing backend credentials: set backend_password or backend_password_file")
	}
	t.BackendPassword = pw

	usersP := p.key("users")
	if len(r.Users) == 0 {
		l.errorf(usersP, 0, "at least one client login is required")
	}
	t.Users = l.logins(usersP, r.Users)
	for _, u := range sortedKeys(t.Users) {
		if owner, taken := c.users[u]; taken {
			l.errorf(usersP.item(u), 0, "user name already belongs to tenant %s", owner.Name)
			continue
		}
		c.users[u] = t
	}

	s := l.policy(p, &r.rawPolicy, &t.Policy)
	l.checkPolicy(p, t.Policy, s, budgetOK, budget, false)
	return t
}

// LookupUser returns the tenant a client login belongs to and the login's
// credential. ok is false for an unknown user.
func (c *Config) LookupUser(user string) (*Tenant, Credential, bool) {
	if c == nil {
		return nil, Credential{}, false
	}
	t, ok := c.users[user]
	if !ok {
		return nil, Credential{}, false
	}
	cred, ok := t.Users[user]
	return t, cred, ok
}

// TenantForDatabase reports whether a client of tenant t may name database
// in its startup message: the tenant's backend database, or the tenant's
// name.
func (c *Config) TenantForDatabase(t *Tenant, database string) bool {
	return t != nil && database != "" && (database == t.Database || database == t.Name)
}
