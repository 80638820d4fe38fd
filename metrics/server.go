package metrics

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"go.uber.org/zap"
)

// DefaultShutdownTimeout bounds a graceful shutdown when
// Server.ShutdownTimeout is zero.
const DefaultShutdownTimeout = 5 * time.Second

// Server serves a Handler (usually from New) over HTTP on the admin
// address. The zero value with Handler set is ready to use; one Server may
// Serve once at a time.
type Server struct {
	// Handler answers every request. Required.
	Handler http.Handler
	// Logger receives lifecycle lines and HTTP server errors; nil means
	// none.
	Logger *zap.Logger
	// ShutdownTimeout is how long requests in flight may finish once the
	// context ends; zero means DefaultShutdownTimeout. Requests still
	// running after it are cut off.
	ShutdownTimeout time.Duration
}

// ListenAndServe listens on address (admin.address, host:port) and serves
// until ctx ends, as Serve does.
func (s *Server) ListenAndServe(ctx context.Context, address string) error {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", address)
	if err != nil {
		return fmt.Errorf("metrics: listen on %s: %w", address, err)
	}
	return s.Serve(ctx, ln)
}

// Serve serves on ln until ctx ends, then stops accepting and lets requests
// in flight finish for up to ShutdownTimeout. It returns nil after a clean
// shutdown, an error if requests had to be cut off or if serving failed
// before ctx ended. It closes ln. Cancel ctx after the
// router has drained, so that /readyz answers "draining" and /metrics is
// scraped while sessions end.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	if s.Handler == nil {
		ln.Close()
		return errors.New("metrics: Server.Handler is nil")
	}
	log := s.Logger
	if log == nil {
		log = zap.NewNop()
	}
	timeout := s.ShutdownTimeout
	if timeout <= 0 {
		timeout = DefaultShutdownTimeout
	}
	srv := &http.Server{
		Handler:           s.Handler,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          zap.NewStdLog(log.Named("http")),
	}

	log.Info("admin http listening", zap.String("address", ln.Addr().String()))
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()

	select {
	case err := <-errc:
		return fmt.Errorf("metrics: serve: %w", err)
	case <-ctx.Done():
	}

	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), timeout)
	defer cancel()
	err := srv.Shutdown(sctx)
	if err != nil {
		srv.Close()
		err = fmt.Errorf("metrics: graceful shutdown: %w", err)
	}
	<-errc // http.ErrServerClosed
	log.Info("admin http stopped")
	return err
}
