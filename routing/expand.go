package routing

import (
	"fmt"
	"strings"
)

// expandEnv replaces ${NAME} in s with the value of the variable NAME and
// "$$" with a single "$". Any other "$" is kept as it is, so SCRAM verifiers
// ("SCRAM-SHA-256$4096:...") need no escaping. Expansion is a single pass: a
// variable's value is never expanded again.
//
// It works on decoded string values, never on the raw file, so a variable
// cannot inject YAML structure.
func expandEnv(s string, env func(string) (string, bool)) (string, error) {
	if !strings.Contains(s, "$") {
		return s, nil
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '$' || i+1 == len(s) {
			b.WriteByte(c)
			continue
		}
		switch s[i+1] {
		case '$':
			b.WriteByte('$')
			i++
		case '{':
			end := strings.IndexByte(s[i+2:], '}')
			if end < 0 {
				return "", fmt.Errorf("unterminated ${ (a literal $ is written $$)")
			}
			name := s[i+2 : i+2+end]
			if !validVarName(name) {
				return "", fmt.Errorf("invalid environment variable name %q in ${...}", name)
			}
			val, ok := env(name)
			if !ok {
				return "", fmt.Errorf("environment variable %s is not set", name)
			}
			b.WriteString(val)
			i += 2 + end
		default:
			b.WriteByte(c)
		}
	}
	return b.String(), nil
}

func validVarName(name string) bool {
	if name == "" {
		return false
	}
	for i, r := range name {
		switch {
		case r == '_', r >= 'A' && r <= 'Z', r >= 'a' && r <= 'z':
		case r >= '0' && r <= '9' && i > 0:
		default:
			return false
		}
	}
	return true
}
