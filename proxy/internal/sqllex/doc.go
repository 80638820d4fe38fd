// Package sqllex finds SQL statements whose effect outlives their
// transaction, so that a transaction-pooling router can pin a client to
// its backend (or refuse the statement) without parsing SQL.
//
// It is built on a small lexer that follows PostgreSQL's scanner closely
// enough to agree with it on where quotes, comments and statements begin
// and end:
//
//   - "--" comments run to the end of the line; "/* */" comments nest;
//   - '...' strings double embedded quotes (standard_conforming_strings is
//     assumed on, so a backslash is an ordinary character in them), and
//     adjacent literals separated by whitespace containing a newline are
//     one literal, as in PostgreSQL;
//   - E'...' strings also take backslash escapes (\' does not end them);
//   - B'...', X'...', N'...' and U&'...' are string literals too;
//   - "..." identifiers double embedded quotes; U&"..." is an identifier;
//   - $tag$...$tag$ strings are opaque: the tag is empty or an identifier
//     that does not start with a digit and contains no "$"; "$1" is a
//     parameter, and "$" inside an identifier (a$b) belongs to it;
//   - a query string is split on ";" that is outside parentheses and
//     outside a BEGIN ATOMIC ... END function body.
//
// Unterminated quotes and comments run to the end of the input. Nothing
// is matched with regular expressions, and nothing panics.
//
// [Analyze] reports each statement of a query string with its first
// keyword and its [Effect]; [Effects] is the fast path that returns only
// the union and does not allocate (except to decode a DO body or EXECUTE
// literal written with escapes or doubled quotes). What counts as an
// effect:
//
//   - session-level SET / RESET and set_config(..., false): [EffectSet];
//     SET LOCAL, SET TRANSACTION, SET CONSTRAINTS and set_config(..., true)
//     do not pin;
//   - PREPARE (not PREPARE TRANSACTION), LISTEN, LOAD, DECLARE ... WITH HOLD;
//   - temporary tables, views and sequences: CREATE TEMP ..., objects
//     created in pg_temp, SELECT ... INTO TEMP ...; ON COMMIT DROP tables
//     do not pin;
//   - calls of the session-level advisory lock functions, anywhere in a
//     statement (not the _xact_ variants);
//   - role changes, which the router refuses: SET [LOCAL|SESSION] ROLE,
//     SET SESSION AUTHORIZATION, RESET ROLE, RESET SESSION AUTHORIZATION,
//     and set_config('role' | 'session_authorization', ...);
//   - DISCARD ALL and DEALLOCATE, which give session state back.
//
// Function calls are recognised by name followed by "(", with any schema
// qualification and with quoted names. Text inside string literals is
// never looked at, with two exceptions that execute immediately: the body
// of a DO block (PL/pgSQL, the default language) and string literals
// given to EXECUTE inside such a body. Bodies of CREATE FUNCTION and
// CREATE PROCEDURE are not executed when created and never count.
//
// The analysis is lexical, so it cannot see what a called user function,
// a procedure or dynamically built SQL does; [Analyze] lists the
// limitations. It is a pinning heuristic, not a security boundary: a
// router that must never let a role change through should also watch
// the backend's ParameterStatus reports (session_authorization).
package sqllex
