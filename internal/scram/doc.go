// Package scram is the server half of SCRAM-SHA-256 (RFC 5802, RFC 7677) as
// PostgreSQL speaks it during client login.
//
// It owns three things:
//
//   - the stored secret, [Verifier], in the text form PostgreSQL keeps in
//     pg_authid.rolpassword, with strict parsing and generation from a
//     password (including PostgreSQL's SASLprep handling of the password);
//   - a mock verifier for user names that do not exist, so that an unknown
//     user sees the same exchange as a known user with a wrong password;
//   - one authentication exchange, [Server]: it reads the client's two
//     messages (the payloads of SASLInitialResponse and SASLResponse), checks
//     the proof and produces the server's two messages (the payloads of
//     AuthenticationSASLContinue and AuthenticationSASLFinal).
//
// Framing the messages on the wire, capping their size, advertising the
// mechanism and turning errors into ErrorResponse messages belong to the
// caller. Only SCRAM-SHA-256 is offered: channel binding (SCRAM-SHA-256-PLUS)
// is refused.
package scram
