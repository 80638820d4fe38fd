package metrics

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/pgbridge/pgbridge/internal/stats"
)

func listen(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

func httpGet(url string) (int, string, error) {
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	c.CloseIdleConnections()
	return resp.StatusCode, string(b), err
}

func TestServerServesAndStops(t *testing.T) {
	ln := listen(t)
	url := "http://" + ln.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	s := &Server{Handler: New(Options{Source: sampleSource})}
	go func() { done <- s.Serve(ctx, ln) }()

	for _, path := range []string{"/healthz", "/readyz", "/metrics"} {
		code, _, err := httpGet(url + path)
		if err != nil || code != http.StatusOK {
			t.Errorf("GET %s = %d, %v", path, code, err)
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Serve after cancel = %v, want nil", err)
	}
	if _, _, err := httpGet(url + "/healthz"); err == nil {
		t.Error("still serving after Serve returned")
	}
}

// A probe in flight when the context ends still gets its answer.
func TestServerGraceful(t *testing.T) {
	started := make(chan struct{})
	release := make(chan struct{})
	h := New(Options{Source: sampleSource, ReadyTimeout: 10 * time.Second, Ready: func(ctx context.Context) error {
		close(started)
		select {
		case <-release:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}})
	ln := listen(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- (&Server{Handler: h}).Serve(ctx, ln) }()

	type result struct {
		code int
		err  error
	}
	res := make(chan result, 1)
	go func() {
		code, _, err := httpGet("http://" + ln.Addr().String() + "/readyz")
		res <- result{code, err}
	}()
	<-started
	cancel()
	time.Sleep(20 * time.Millisecond) // let Shutdown begin
	close(release)
	r := <-res
	if r.err != nil || r.code != http.StatusOK {
		t.Errorf("in-flight /readyz = %d, %v; want 200", r.code, r.err)
	}
	if err := <-done; err != nil {
		t.Errorf("Serve = %v, want nil", err)
	}
}

func TestServerShutdownTimeout(t *testing.T) {
	started := make(chan struct{})
	release := make(chan struct{})
	h := New(Options{Source: sampleSource, ReadyTimeout: 10 * time.Second, Ready: func(ctx context.Context) error {
		close(started)
		<-release
		return nil
	}})
	ln := listen(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- (&Server{Handler: h, ShutdownTimeout: 20 * time.Millisecond}).Serve(ctx, ln) }()
	res := make(chan error, 1)
	go func() {
		_, _, err := httpGet("http://" + ln.Addr().String() + "/readyz")
		res <- err
	}()
	<-started
	cancel()
	err := <-done
	if err == nil || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Serve with a stuck request = %v, want a deadline error", err)
	}
	close(release)
	<-res // the client sees its connection cut or the late answer
}

func TestListenAndServeBadAddress(t *testing.T) {
	ln := listen(t)
	defer ln.Close()
	s := &Server{Handler: New(Options{Source: func() stats.Snapshot { return stats.Snapshot{} }})}
	err := s.ListenAndServe(context.Background(), ln.Addr().String()) // taken
	if err == nil || !strings.Contains(err.Error(), "listen on") {
		t.Errorf("ListenAndServe on a taken port = %v", err)
	}
}

func TestServeWithoutHandler(t *testing.T) {
	if err := (&Server{}).Serve(context.Background(), listen(t)); err == nil {
		t.Error("Serve without a Handler = nil error")
	}
}
