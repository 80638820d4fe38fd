package routing

import "time"

// unsupportedKeys lists the keys of the configuration contract whose
// behaviour this release does not implement yet. Setting one of them to a
// value that would need that behaviour fails the load with
// "<path>: not supported yet in this version of pgbridge": a limit that is
// accepted but silently not enforced would be worse than a refusal.
//
// This table is the only place that knows about it. When a feature lands,
// delete its rows.
//
// path is a key path pattern where "*" stands for one map key (a tenant
// name); when says whether the value set in the file needs the feature.
var unsupportedKeys = []struct {
	path string
	when func(v any) bool
}{
	{"admin.address", nonZero},
}

func nonZero(v any) bool {
	switch v := v.(type) {
	case string:
		return v != ""
	case int:
		return v != 0
	case float64:
		return v != 0
	case bool:
		return v
	case time.Duration:
		return v != 0
	}
	return true
}

// checkUnsupported applies unsupportedKeys to every key the file set.
func (l *loader) checkUnsupported() {
	for _, k := range l.set {
		for _, rule := range unsupportedKeys {
			if rule.path == k.pattern && rule.when(k.value) {
				l.probs.add(k.path, 0, "not supported yet in this version of pgbridge")
			}
		}
	}
}
