package pgtest

import (
	"context"
	"crypto/rand"
	"fmt"
	"regexp"
	"strings"
)

// Tenant is a Bridge tenant: one database and one role that owns access to it.
type Tenant struct {
	Name     string // "acme"
	Database string // "tenant_acme"
	User     string // "acme_user"
	Password string
}

var tenantName = regexp.MustCompile(`^[a-z][a-z0-9_]{0,30}$`)

// CreateTenant provisions tenant name with a random password.
func (c *Cluster) CreateTenant(ctx context.Context, name string) (Tenant, error) {
	return c.CreateTenantWithPassword(ctx, name, rand.Text())
}

// CreateTenantWithPassword provisions tenant name the way Bridge onboarding
// does: database tenant_<name>, login role <name>_user with all privileges on
// it, CONNECT revoked from PUBLIC, and inside the database a schema app_data
// owned by the role plus CREATE/USAGE on schema public (which PostgreSQL 15 no
// longer grants to everyone). search_path is left alone. Creating an existing
// tenant is an error.
func (c *Cluster) CreateTenantWithPassword(ctx context.Context, name, password string) (Tenant, error) {
	if !tenantName.MatchString(name) {
		return Tenant{}, fmt.Errorf("pgtest: invalid tenant name %q: must match %s", name, tenantName)
	}
	t := Tenant{Name: name, Database: "tenant_" + name, User: name + "_user", Password: password}
	pw := "'" + strings.ReplaceAll(password, "'", "''") + "'"
	// CREATE DATABASE cannot run inside a (implicit) transaction: one statement per call.
	for _, stmt := range []string{
		"CREATE DATABASE " + t.Database,
		"CREATE USER " + t.User + " WITH PASSWORD " + pw,
		"GRANT ALL PRIVILEGES ON DATABASE " + t.Database + " TO " + t.User,
		"REVOKE CONNECT ON DATABASE " + t.Database + " FROM PUBLIC",
	} {
		if err := c.Exec(ctx, "postgres", stmt); err != nil {
			return Tenant{}, fmt.Errorf("pgtest: create tenant %s: %w", name, err)
		}
	}
	err := c.Exec(ctx, t.Database, "CREATE SCHEMA app_data AUTHORIZATION "+t.User+
		"; GRANT CREATE, USAGE ON SCHEMA public TO "+t.User)
	if err != nil {
		return Tenant{}, fmt.Errorf("pgtest: create tenant %s: %w", name, err)
	}
	return t, nil
}
