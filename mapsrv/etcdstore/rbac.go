package etcdstore

import (
	"context"
	"errors"
	"fmt"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// etcd roles of the least-privilege layout (docs/etcd-layout.md, "Access
// control").
const (
	// RoleWriter may read and write everything under the layout's prefix:
	// mapsrv, the only writer.
	RoleWriter = "ila-writer"
	// RoleReader may only read under the prefix: ilad (its mapping watch)
	// and dnsbridge. Neither writes to etcd: ilad registers through mapsrv
	// (the registration protocol), dnsbridge only answers queries.
	RoleReader = "ila-reader"
	// HealthKey is the key mapsrv's health check reads (outside the
	// prefix); RoleWriter may read it.
	HealthKey = "health-check-key"
)

// RBACUser is one etcd user InitRBAC creates.
type RBACUser struct {
	Name string
	// Password; empty creates a user without one, who authenticates with a
	// TLS client certificate whose common name is Name.
	Password string
	Role     string // RoleWriter or RoleReader
}

// DefaultRBACPrefix is the key range the roles cover: everything of the
// mapping service (/ila/), its layout version included.
const DefaultRBACPrefix = "/ila/"

// InitRBAC creates the roles RoleWriter and RoleReader over prefix (""
// means DefaultRBACPrefix), the root user with rootPassword, and users, then
// enables authentication. It may be run again (existing roles and users
// are kept, their grants added again); once authentication is enabled it
// must run as root (auth is then the root user's client).
func InitRBAC(ctx context.Context, auth clientv3.Auth, prefix, rootPassword string, users []RBACUser) error {
	if prefix == "" {
		prefix = DefaultRBACPrefix
	}
	if rootPassword == "" {
		return errors.New("etcd rbac: empty root password")
	}
	exists := func(err error) error {
		if errors.Is(err, rpctypes.ErrRoleAlreadyExist) || errors.Is(err, rpctypes.ErrUserAlreadyExist) {
			return nil
		}
		return err
	}
	end := clientv3.GetPrefixRangeEnd(prefix)
	steps := []struct {
		what string
		do   func() error
	}{
		{"add role root", func() error { _, err := auth.RoleAdd(ctx, "root"); return exists(err) }},
		{"add user root", func() error { _, err := auth.UserAdd(ctx, "root", rootPassword); return exists(err) }},
		{"grant root", func() error { _, err := auth.UserGrantRole(ctx, "root", "root"); return err }},
		{"add role " + RoleWriter, func() error { _, err := auth.RoleAdd(ctx, RoleWriter); return exists(err) }},
		{"grant " + RoleWriter, func() error {
			_, err := auth.RoleGrantPermission(ctx, RoleWriter, prefix, end, clientv3.PermissionType(clientv3.PermReadWrite))
			return err
		}},
		{"grant " + RoleWriter + " " + HealthKey, func() error {
			_, err := auth.RoleGrantPermission(ctx, RoleWriter, HealthKey, "", clientv3.PermissionType(clientv3.PermRead))
			return err
		}},
		{"add role " + RoleReader, func() error { _, err := auth.RoleAdd(ctx, RoleReader); return exists(err) }},
		{"grant " + RoleReader, func() error {
			_, err := auth.RoleGrantPermission(ctx, RoleReader, prefix, end, clientv3.PermissionType(clientv3.PermRead))
			return err
		}},
	}
	for _, u := range users {
		if u.Role != RoleWriter && u.Role != RoleReader {
			return fmt.Errorf("etcd rbac: user %s: role %q, want %s or %s", u.Name, u.Role, RoleWriter, RoleReader)
		}
		steps = append(steps,
			struct {
				what string
				do   func() error
			}{"add user " + u.Name, func() error {
				_, err := auth.UserAddWithOptions(ctx, u.Name, u.Password, &clientv3.UserAddOptions{NoPassword: u.Password == ""})
				return exists(err)
			}},
			struct {
				what string
				do   func() error
			}{"grant " + u.Role + " to " + u.Name, func() error { _, err := auth.UserGrantRole(ctx, u.Name, u.Role); return err }},
		)
	}
	for _, s := range steps {
		if err := s.do(); err != nil {
			return fmt.Errorf("etcd rbac: %s: %w", s.what, err)
		}
	}
	if _, err := auth.AuthEnable(ctx); err != nil {
		return fmt.Errorf("etcd rbac: enable authentication: %w", err)
	}
	return nil
}
