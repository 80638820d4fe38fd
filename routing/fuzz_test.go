package routing

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzParse feeds the configuration parser arbitrary documents: it must
// answer every one with a configuration or a *ConfigError, never a panic,
// and a configuration it accepts must explain itself.
func FuzzParse(f *testing.F) {
	seeds, _ := filepath.Glob("../examples/*.yaml")
	for _, name := range seeds {
		if b, err := os.ReadFile(name); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte("backend: {host: db}\ntenants:\n  acme:\n    database: acme\n    backend_user: acme\n    backend_password: x\n    users: {app: {verifier: x}}\n"))
	f.Add([]byte("listen: {port: ${PORT}}\nbackend: {host: db, max_connections: \"1${POOL}\"}\n"))
	f.Add([]byte("defaults: {pool_size: 99999999999999999999, statement_timeout: 1e400s}\n"))
	f.Add([]byte("tenants: [1, 2]\n&a [*a]\n"))
	env := func(k string) (string, bool) {
		switch k {
		case "PORT":
			return "6432", true
		case "POOL":
			return "0", true
		}
		return "", false
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		// Secret and certificate files are read from disk: keep the
		// fuzzer off devices that never end.
		if strings.Contains(string(data), "/dev/") || strings.Contains(string(data), "/proc/") {
			t.Skip()
		}
		cfg, err := Parse(data, env)
		if err != nil {
			return
		}
		_ = cfg.Explain()
		_ = cfg.Settings()
	})
}
