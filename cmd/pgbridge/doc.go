// Command pgbridge is the router's binary: it reads flags and the config
// file, builds the logger, the pools and the proxy, opens the listener and
// serves until SIGINT/SIGTERM (graceful drain; a second signal exits at
// once). Subcommands check-config and passwd help operators write configs.
package main
