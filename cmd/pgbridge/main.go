package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"runtime/pprof"
	"strings"
	"syscall"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/pgbridge/pgbridge/internal/scram"
	"github.com/pgbridge/pgbridge/pool"
	"github.com/pgbridge/pgbridge/proxy"
	"github.com/pgbridge/pgbridge/routing"
)

const usage = `usage:
  pgbridge serve --config FILE     run the router
  pgbridge check-config FILE       validate a config file and explain it
  pgbridge passwd                  read a password on stdin, print a SCRAM-SHA-256 verifier
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[0] {
	case "serve":
		fs := flag.NewFlagSet("serve", flag.ContinueOnError)
		fs.SetOutput(stderr)
		cfgPath := fs.String("config", "pgbridge.yaml", "configuration file")
		cpuProfile := fs.String("cpuprofile", "", "write a CPU profile to this file until exit (for load tests)")
		if err := fs.Parse(args[1:]); err != nil {
			return 2
		}
		if *cpuProfile != "" {
			f, err := os.Create(*cpuProfile)
			if err != nil {
				fmt.Fprintf(stderr, "pgbridge: %v\n", err)
				return 1
			}
			defer f.Close()
			if err := pprof.StartCPUProfile(f); err != nil {
				fmt.Fprintf(stderr, "pgbridge: %v\n", err)
				return 1
			}
			defer pprof.StopCPUProfile()
		}
		return serve(*cfgPath, stderr)
	case "check-config":
		if len(args) != 2 {
			fmt.Fprint(stderr, usage)
			return 2
		}
		cfg, err := routing.Load(args[1])
		if err != nil {
			fmt.Fprintf(stderr, "%s: invalid configuration:\n%v\n", args[1], err)
			return 1
		}
		fmt.Fprintf(stdout, "%s: configuration is valid\n\n%s", args[1], cfg.Explain())
		return 0
	case "passwd":
		return passwd(stdin, stdout, stderr)
	case "-h", "--help", "help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "pgbridge: unknown command %q\n%s", args[0], usage)
		return 2
	}
}

func passwd(stdin io.Reader, stdout, stderr io.Writer) int {
	line, err := bufio.NewReader(stdin).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		fmt.Fprintf(stderr, "pgbridge passwd: %v\n", err)
		return 1
	}
	pw := strings.TrimRight(line, "\r\n")
	if pw == "" {
		fmt.Fprintln(stderr, "pgbridge passwd: empty password on stdin")
		return 1
	}
	v, err := scram.GenerateVerifier(pw)
	if err != nil {
		fmt.Fprintf(stderr, "pgbridge passwd: %v\n", err)
		return 1
	}
	fmt.Fprintln(stdout, v.String())
	return 0
}

func serve(path string, stderr io.Writer) int {
	cfg, err := routing.Load(path)
	if err != nil {
		fmt.Fprintf(stderr, "%s: invalid configuration:\n%v\n", path, err)
		return 1
	}
	log, err := newLogger(cfg.Log, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "pgbridge: logger: %v\n", err)
		return 1
	}
	defer func() { _ = log.Sync() }()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sigs)
	go func() {
		stopping := false
		for sig := range sigs {
			switch {
			case sig == syscall.SIGHUP:
				log.Warn("SIGHUP ignored: configuration reload is not supported yet in this version; restart to apply changes")
			case stopping:
				log.Warn("second signal: exiting now", zap.String("signal", sig.String()))
				os.Exit(1)
			default:
				stopping = true
				log.Info("shutting down: draining sessions", zap.String("signal", sig.String()),
					zap.Duration("shutdown_timeout", cfg.Listen.ShutdownTimeout))
				cancel()
			}
		}
	}()

	pm := pool.New(cfg, pool.WithLogger(log.Named("pool")))
	defer pm.Close()
	srv, err := proxy.New(cfg, pm, proxy.WithLogger(log.Named("proxy")))
	if err != nil {
		log.Error("cannot start", zap.Error(err))
		return 1
	}
	ln, err := net.Listen("tcp", cfg.Listen.Address)
	if err != nil {
		log.Error("cannot listen", zap.String("address", cfg.Listen.Address), zap.Error(err))
		return 1
	}
	log.Info("pgbridge listening", zap.String("address", ln.Addr().String()), zap.Int("tenants", len(cfg.Tenants)),
		zap.String("backend", net.JoinHostPort(cfg.Backend.Host, fmt.Sprint(cfg.Backend.Port))))
	if err := srv.Serve(ctx, ln); err != nil {
		log.Error("serve failed", zap.Error(err))
		return 1
	}
	log.Info("pgbridge stopped")
	return 0
}

// newLogger builds the process logger: JSON unless format is console, or
// auto on a terminal.
func newLogger(c routing.Log, out io.Writer) (*zap.Logger, error) {
	level, err := zapcore.ParseLevel(c.Level)
	if err != nil {
		return nil, err
	}
	console := c.Format == "console"
	if c.Format == "auto" || c.Format == "" {
		if f, ok := out.(*os.File); ok {
			if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
				console = true
			}
		}
	}
	ec := zap.NewProductionEncoderConfig()
	ec.EncodeTime = zapcore.ISO8601TimeEncoder
	var enc zapcore.Encoder
	if console {
		ec.EncodeLevel = zapcore.CapitalColorLevelEncoder
		enc = zapcore.NewConsoleEncoder(ec)
	} else {
		enc = zapcore.NewJSONEncoder(ec)
	}
	return zap.New(zapcore.NewCore(enc, zapcore.Lock(zapcore.AddSync(out)), level)), nil
}
