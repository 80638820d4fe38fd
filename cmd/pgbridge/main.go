package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime/pprof"
	"runtime/trace"
	"strings"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/pgbridge/pgbridge/internal/scram"
	"github.com/pgbridge/pgbridge/routing"
)

const usage = `usage:
  pgbridge serve [--config FILE]   run the router (FILE: pgbridge.yaml unless given;
                                   --cpuprofile FILE and --trace FILE record a CPU
                                   profile and an execution trace until it exits)
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
		traceFile := fs.String("trace", "", "write an execution trace to this file until exit (for scheduling studies; large)")
		if err := fs.Parse(args[1:]); err != nil {
			return 2
		}
		if fs.NArg() > 0 {
			// Serving some other file than the one named would be worse
			// than not starting.
			fmt.Fprintf(stderr, "pgbridge serve: unexpected argument %q: name the configuration file with --config FILE\n", fs.Arg(0))
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
		if *traceFile != "" {
			f, err := os.Create(*traceFile)
			if err != nil {
				fmt.Fprintf(stderr, "pgbridge: %v\n", err)
				return 1
			}
			defer f.Close()
			if err := trace.Start(f); err != nil {
				fmt.Fprintf(stderr, "pgbridge: %v\n", err)
				return 1
			}
			defer trace.Stop()
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

// newLogger builds the process logger: JSON unless format is console, or
// auto on a terminal. Its level can change on reload.
func newLogger(c routing.Log, out io.Writer) (*zap.Logger, zap.AtomicLevel, error) {
	level, err := zap.ParseAtomicLevel(c.Level)
	if err != nil {
		return nil, level, err
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
	return zap.New(zapcore.NewCore(enc, zapcore.Lock(zapcore.AddSync(out)), level)), level, nil
}
