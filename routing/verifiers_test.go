package routing

import "testing"

// A password login keeps its salt across loads in one process (a reload
// must not tell known names from unknown ones, whose mock salt is
// stable), and two logins with one password get different salts.
func TestPasswordVerifierStableAcrossLoads(t *testing.T) {
	conf := func(pw string) string {
		return "backend: {host: db}\ntenants:\n  acme:\n    database: d\n    backend_user: u\n    backend_password: x\n" +
			"    users:\n      a: {password: " + pw + "}\n      b: {password: same-pw}\n"
	}
	src := conf("same-pw")
	first := mustParse(t, src, nil)
	second := mustParse(t, src, nil)
	_, a1, _ := first.LookupUser("a")
	_, a2, _ := second.LookupUser("a")
	_, b1, _ := first.LookupUser("b")
	if a1.Verifier.String() != a2.Verifier.String() {
		t.Errorf("verifier changed across loads:\n%s\n%s", a1.Verifier, a2.Verifier)
	}
	if a1.Verifier.String() == b1.Verifier.String() {
		t.Error("two logins with one password share a salt")
	}
	changed := mustParse(t, conf("other-pw"), nil)
	if _, a3, _ := changed.LookupUser("a"); a3.Verifier.String() == a1.Verifier.String() {
		t.Error("a new password kept the old verifier")
	}
}
