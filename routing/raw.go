package routing

import (
	"fmt"
	"reflect"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"
)

// The raw* types mirror the YAML contract one to one. Every field is a
// pointer (or a map) so that a key the file does not set stays nil and can
// be told apart from a key set to its zero value. Leaves are *scalar: the
// text exactly as written, converted only after ${VAR} expansion, which is
// what lets numbers and durations come from the environment.

type rawConfig struct {
	Listen   *rawListen            `yaml:"listen"`
	Admin    *rawAdmin             `yaml:"admin"`
	Backend  *rawBackend           `yaml:"backend"`
	Log      *rawLog               `yaml:"log"`
	Metrics  *rawMetrics           `yaml:"metrics"`
	Defaults *rawPolicy            `yaml:"defaults"`
	Tenants  map[string]*rawTenant `yaml:"tenants"`
}

type rawListen struct {
	Address              *scalar       `yaml:"address"`
	TLS                  *rawListenTLS `yaml:"tls"`
	MaxClientConnections *scalar       `yaml:"max_client_connections"`
	LoginTimeout         *scalar       `yaml:"login_timeout"`
	MaxStartupPacket     *scalar       `yaml:"max_startup_packet"`
	ShutdownTimeout      *scalar       `yaml:"shutdown_timeout"`
}

type rawListenTLS struct {
	CertFile *scalar `yaml:"cert_file"`
	KeyFile  *scalar `yaml:"key_file"`
	Mode     *scalar `yaml:"mode"`
}

type rawAdmin struct {
	Address *scalar                   `yaml:"address"`
	Users   map[string]*rawCredential `yaml:"users"`
}

type rawBackend struct {
	Host           *scalar        `yaml:"host"`
	Port           *scalar        `yaml:"port"`
	TLS            *rawBackendTLS `yaml:"tls"`
	MaxConnections *scalar        `yaml:"max_connections"`
	MaxActiveTx    *scalar        `yaml:"max_active_transactions"`
	ConnectTimeout *scalar        `yaml:"connect_timeout"`
	ResumeTimeout  *scalar        `yaml:"resume_timeout"`
	IdleTimeout    *scalar        `yaml:"idle_timeout"`
	MaxLifetime    *scalar        `yaml:"max_lifetime"`
	AWSRegion      *scalar        `yaml:"aws_region"`
}

type rawMetrics struct {
	TenantLabels *scalar `yaml:"tenant_labels"`
}

type rawBackendTLS struct {
	Mode   *scalar `yaml:"mode"`
	CAFile *scalar `yaml:"ca_file"`
}

type rawLog struct {
	Level   *scalar `yaml:"level"`
	Format  *scalar `yaml:"format"`
	Queries *scalar `yaml:"queries"`
}

type rawPolicy struct {
	PoolMode                 *scalar `yaml:"pool_mode"`
	PoolSize                 *scalar `yaml:"pool_size"`
	MinPoolSize              *scalar `yaml:"min_pool_size"`
	MaxClientConnections     *scalar `yaml:"max_client_connections"`
	PoolWaitTimeout          *scalar `yaml:"pool_wait_timeout"`
	StatementTimeout         *scalar `yaml:"statement_timeout"`
	MaxStatementTimeout      *scalar `yaml:"max_statement_timeout"`
	IdleInTransactionTimeout *scalar `yaml:"idle_in_transaction_timeout"`
	ClientIdleTimeout        *scalar `yaml:"client_idle_timeout"`
	QueryRate                *scalar `yaml:"query_rate"`
	QueryBurst               *scalar `yaml:"query_burst"`
	ConnectionRate           *scalar `yaml:"connection_rate"`
	ReservedConnections      *scalar `yaml:"reserved_connections"`
	MaxMessageSize           *scalar `yaml:"max_message_size"`
}

type rawTenant struct {
	Database            *scalar                   `yaml:"database"`
	BackendUser         *scalar                   `yaml:"backend_user"`
	BackendPassword     *scalar                   `yaml:"backend_password"`
	BackendPasswordFile *scalar                   `yaml:"backend_password_file"`
	BackendAuth         *scalar                   `yaml:"backend_auth"`
	Users               map[string]*rawCredential `yaml:"users"`
	rawPolicy           `yaml:",inline"`
}

type rawCredential struct {
	Scram        *scalar `yaml:"scram"`
	ScramFile    *scalar `yaml:"scram_file"`
	Password     *scalar `yaml:"password"`
	PasswordFile *scalar `yaml:"password_file"`
}

// scalar is one leaf value as written in the file, before expansion.
type scalar struct {
	Value string
	Line  int
	bad   bool // not a single value; already reported by the shape check
}

func (s *scalar) UnmarshalYAML(n *yaml.Node) error {
	// A mapping or list here has been reported by the shape check; leave
	// the value unset so the rest of the file can still be checked.
	if n.Kind != yaml.ScalarNode {
		s.bad = true
		return nil
	}
	s.Value, s.Line = n.Value, n.Line
	return nil
}

var scalarType = reflect.TypeOf(scalar{})

// maxNodeVisits bounds the shape check so that a file abusing YAML aliases
// cannot make it run for ever; real configurations are far below this.
const maxNodeVisits = 1 << 20

// maxShapeProblems stops the shape check once this many problems are
// known; nobody reads further, and aliases could multiply them.
const maxShapeProblems = 100

// shapeChecker walks the YAML node tree alongside the raw types before the
// strict decode. It exists to give every structural problem (unknown key,
// duplicate key, a mapping where a value belongs, ...) a dotted path as well
// as a line, which yaml.v3's own errors lack. It also records the line of
// every key so that later validation errors can point into the file.
type shapeChecker struct {
	lines  map[string]int
	probs  *problems
	visits int
	fields map[reflect.Type]map[string]reflect.Type // yamlFields cache
}

func (c *shapeChecker) stopped() bool {
	return c.visits > maxNodeVisits || len(c.probs.list) >= maxShapeProblems
}

func (c *shapeChecker) check(n *yaml.Node, t reflect.Type, path string) {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	if c.stopped() {
		return
	}
	c.visits++
	if c.visits > maxNodeVisits {
		c.probs.add(path, n.Line, "document is too large or uses too many aliases")
		return
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null" {
		return // unset
	}
	if t == scalarType {
		if n.Kind != yaml.ScalarNode {
			c.probs.add(path, n.Line, "expected a single value, found a %s", kindName(n.Kind))
		}
		return
	}
	if n.Kind != yaml.MappingNode {
		c.probs.add(path, n.Line, "expected a mapping of keys, found a %s", kindName(n.Kind))
		return
	}
	var fields map[string]reflect.Type
	if t.Kind() == reflect.Struct {
		if fields = c.fields[t]; fields == nil {
			if c.fields == nil {
				c.fields = map[reflect.Type]map[string]reflect.Type{}
			}
			fields = yamlFields(t)
			c.fields[t] = fields
		}
	}
	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content) && !c.stopped(); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		for k.Kind == yaml.AliasNode && k.Alias != nil {
			k = k.Alias
		}
		if k.Kind != yaml.ScalarNode {
			c.probs.add(path, k.Line, "a key must be a plain value, found a %s", kindName(k.Kind))
			continue
		}
		if isMergeKey(k) {
			c.checkMerge(v, t, path)
			continue
		}
		name := k.Value
		if k.ShortTag() == "!!null" {
			c.probs.add(path, k.Line, "a key must not be empty (null)")
			continue
		}
		child := joinPath(path, name)
		if first, dup := seen[name]; dup {
			c.probs.add(child, k.Line, "key is set twice (first on line %d)", first)
			continue
		}
		seen[name] = k.Line
		c.lines[child] = k.Line
		if fields == nil { // a map: any key, all values of one type
			c.check(v, t.Elem(), child)
			continue
		}
		ft, ok := fields[name]
		if !ok {
			msg := "unknown key"
			if s := closest(name, fields); s != "" {
				msg += fmt.Sprintf(", did you mean %s?", s)
			}
			c.probs.add(child, k.Line, "%s", msg)
			continue
		}
		c.check(v, ft, child)
	}
}

// checkMerge handles YAML merge keys ("<<: *anchor"): the merged mappings
// are checked as if their keys were written in place.
func (c *shapeChecker) checkMerge(v *yaml.Node, t reflect.Type, path string) {
	for v.Kind == yaml.AliasNode && v.Alias != nil {
		v = v.Alias
	}
	if v.Kind == yaml.SequenceNode {
		for _, m := range v.Content {
			if c.stopped() {
				return
			}
			c.check(m, t, path)
		}
		return
	}
	c.check(v, t, path)
}

func isMergeKey(k *yaml.Node) bool {
	return k.Value == "<<" && (k.Tag == "" || k.Tag == "!" || k.ShortTag() == "!!merge")
}

func kindName(k yaml.Kind) string {
	switch k {
	case yaml.MappingNode:
		return "mapping"
	case yaml.SequenceNode:
		return "list"
	case yaml.ScalarNode:
		return "single value"
	case yaml.DocumentNode:
		return "document"
	}
	return "alias"
}

// yamlFields lists the keys a struct accepts, following ",inline" fields.
func yamlFields(t reflect.Type) map[string]reflect.Type {
	out := map[string]reflect.Type{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag := f.Tag.Get("yaml")
		name, opts, _ := strings.Cut(tag, ",")
		if name == "-" {
			continue
		}
		if opts == "inline" {
			for k, v := range yamlFields(f.Type) {
				out[k] = v
			}
			continue
		}
		out[name] = f.Type
	}
	return out
}

// closest suggests a known key for a misspelt one, or "".
func closest(name string, fields map[string]reflect.Type) string {
	best, bestDist := "", 3 // suggest only for small typos
	keys := make([]string, 0, len(fields))
	for k := range fields {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if d := editDistance(name, k); d < bestDist {
			best, bestDist = k, d
		}
	}
	return best
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// joinPath appends one key to a dotted path. Keys that would be unreadable
// in a message (empty, or with spaces or control characters) are quoted.
func joinPath(base, key string) string {
	k := key
	if key == "" || strings.IndexFunc(key, func(r rune) bool { return r <= ' ' || r == 0x7f }) >= 0 {
		k = fmt.Sprintf("%q", key)
	}
	if base == "" {
		return k
	}
	return base + "." + k
}
