// Package routing owns the tenants of a pgbridge router: who they are, the
// policy (pool size, timeouts, caps) each one runs under, and the
// configuration file they are declared in.
//
// A Bridge tenant is one database and one backend role on a shared cluster.
// Clients never log in as that role: each tenant lists its own client
// logins (users), and a login belongs to exactly one tenant. Resolving a
// connection is therefore two steps: Config.LookupUser maps the startup
// message's user to its tenant and stored SCRAM verifier, and
// Config.TenantForDatabase checks the database the client named, which may
// be either the tenant's backend database or the tenant's name.
//
// Load and Parse turn the YAML file (the public contract, see DESIGN.md
// section 4) into an immutable, validated Config:
//
//   - decoding is strict: one document, no unknown or repeated keys; every
//     error names the dotted key path and its line, and all problems are
//     reported together (*ConfigError), sorted by path;
//   - ${VAR} in any value expands from the environment after YAML decoding
//     ("$$" is a literal "$"), so numbers and durations may come from the
//     environment too, and a variable can never inject YAML;
//   - every secret has a _file form; relative file names are resolved
//     against the configuration file's directory (Load) or the working
//     directory (Parse);
//   - client passwords are turned into SCRAM verifiers at load time, so the
//     router keeps no client password;
//   - each tenant's Policy is Config.Defaults with the tenant's own keys
//     applied on top;
//   - keys whose behaviour is not built yet are refused when set (see
//     unsupportedKeys) rather than silently ignored.
//
// routing imports no other pgbridge package except internal helpers.
package routing
