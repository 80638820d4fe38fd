package proxy

import (
	"fmt"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestLoginThrottleBackoff(t *testing.T) {
	lt := newLoginThrottle(100)
	now := time.Unix(1_000_000, 0)
	key := throttleKey(&net.TCPAddr{IP: net.ParseIP("10.0.0.1"), Port: 5555}, "app")
	if key != throttleKey(&net.TCPAddr{IP: net.ParseIP("10.0.0.1"), Port: 6666}, "app") {
		t.Fatal("the key depends on the client port")
	}
	for i := 0; i < throttleFree-1; i++ {
		lt.fail(key, now)
		if w := lt.check(key, now); w != 0 {
			t.Fatalf("after %d failures: wait %s, want none", i+1, w)
		}
	}
	lt.fail(key, now) // the throttleFree-th failure starts the back-off
	if w := lt.check(key, now); w != throttleBaseDelay {
		t.Fatalf("wait = %s, want %s", w, throttleBaseDelay)
	}
	if w := lt.check(key, now.Add(throttleBaseDelay)); w != 0 {
		t.Fatalf("wait after the back-off = %s", w)
	}
	// Each further failure doubles the back-off, up to the cap.
	for i, want := range []time.Duration{2 * time.Second, 4 * time.Second, 8 * time.Second} {
		lt.fail(key, now)
		if w := lt.check(key, now); w != want {
			t.Fatalf("failure %d: wait %s, want %s", throttleFree+1+i, w, want)
		}
	}
	for range 20 {
		lt.fail(key, now)
	}
	if w := lt.check(key, now); w != throttleMaxBackoff {
		t.Fatalf("capped wait = %s", w)
	}
	// Success clears; an old entry is forgotten.
	lt.succeed(key)
	if w := lt.check(key, now); w != 0 {
		t.Fatalf("after success: %s", w)
	}
	for range 10 {
		lt.fail(key, now)
	}
	if w := lt.check(key, now.Add(throttleForget+time.Second)); w != 0 {
		t.Fatalf("after forget: %s", w)
	}
}

func TestLoginThrottleIsBounded(t *testing.T) {
	lt := newLoginThrottle(50)
	now := time.Unix(1_000_000, 0)
	for i := range 500 {
		lt.fail(fmt.Sprintf("10.0.%d.%d\x00u", i/256, i%256), now.Add(time.Duration(i)*time.Millisecond))
	}
	if n := len(lt.entries); n > 50 {
		t.Fatalf("%d entries, limit 50", n)
	}
	// The newest entries survive: the stalest were evicted.
	if _, ok := lt.entries[fmt.Sprintf("10.0.%d.%d\x00u", 499/256, 499%256)]; !ok {
		t.Fatal("the newest entry was evicted")
	}
}

func TestEndsTransaction(t *testing.T) {
	q := func(s string) []byte { return appendMsg(nil, 'Q', cstr(s)) }
	for s, want := range map[string]bool{
		"rollback":                true,
		"ROLLBACK;":               true,
		"  commit work ":          true,
		"end":                     true,
		"abort transaction":       true,
		"commit and chain":        true,
		"rollback to savepoint a": false,
		"commit; drop table x":    false,
		"select 1":                false,
		"rollback -- hidden\nx":   false,
		"committed":               false,
		"rollback/*x*/; select 1": false,
		"prepare transaction 'x'": false,
		"commit prepared 'x'":     false,
		"":                        false,
		"begin; commit":           false,
		"rollback\x00":            false,
	} {
		if got := endsTransaction(q(s)); got != want {
			t.Errorf("endsTransaction(%q) = %v, want %v", s, got, want)
		}
	}
	two := append(q("rollback"), q("rollback")...)
	if endsTransaction(two) {
		t.Error("two queries counted as one transaction end")
	}
	if endsTransaction(appendMsg(nil, 'P', cstr(""), cstr("rollback"), []byte{0, 0})) {
		t.Error("a Parse counted as a transaction end")
	}
}

// The statements the router prepares must never be named like its fixed
// stand-ins: a real statement called pgbridge_none would run for a Bind
// the router means to fail, and one called pgbridge_dup would be closed by
// the next duplicate Parse behind its backend's books.
func TestBackendNamesAvoidFixedNames(t *testing.T) {
	for _, fixed := range []string{noSuchStatement, noSuchPortal, dupStatement} {
		for _, base := range []int{10, 36} {
			n, err := strconv.ParseUint(strings.TrimPrefix(fixed, routerPrefix), base, 64)
			if err != nil {
				continue // not a number in this base
			}
			if got := backendName(n); got == fixed {
				t.Fatalf("statement number %d is named %s, the router's fixed name", n, got)
			}
		}
	}
}
