package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/ilamesh/ilamesh/internal/etcdtls"
	"github.com/ilamesh/ilamesh/mapsrv/etcdstore"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

const rbacUsage = `mapsrv rbac-init: create the least-privilege etcd roles and users and
enable authentication (docs/etcd-layout.md, "Access control").

  mapsrv rbac-init --etcd-endpoints EPS --root-password-file F --users F [--etcd-cert C --etcd-key K --etcd-ca CA] [--etcd-user root --etcd-password P]

--users holds one user per line: "<name> <role> [<password>]", role
ila-writer (mapsrv) or ila-reader (ilad, dnsbridge, operators' etcdctl); a
user without a password authenticates with a TLS client certificate whose
common name is its name. Run it again as root (--etcd-user root) once
authentication is on.
`

// runRBACInit is "mapsrv rbac-init".
func runRBACInit(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("mapsrv rbac-init", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, rbacUsage); fs.PrintDefaults() }
	endpoints := fs.String("etcd-endpoints", "", "comma-separated etcd endpoints (mapsrv's embedded etcd: unix://<data-dir>/etcd.sock)")
	rootFile := fs.String("root-password-file", "", "file holding the password of etcd's root user (created if absent)")
	usersFile := fs.String("users", "", "users file: \"<name> <ila-writer|ila-reader> [<password>]\" per line")
	cert := fs.String("etcd-cert", "", "client certificate")
	key := fs.String("etcd-key", "", "client key")
	ca := fs.String("etcd-ca", "", "CA bundle of the etcd servers")
	user := fs.String("etcd-user", "", "etcd user to run as (root, once authentication is on)")
	password := fs.String("etcd-password", os.Getenv("ETCD_PASSWORD"), "its password (default $ETCD_PASSWORD)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("rbac-init: unexpected arguments: %q", fs.Args())
	}
	if *endpoints == "" || *rootFile == "" || *usersFile == "" {
		return errors.New("rbac-init: --etcd-endpoints, --root-password-file and --users are required")
	}
	rb, err := os.ReadFile(*rootFile)
	if err != nil {
		return fmt.Errorf("rbac-init: %w", err)
	}
	root := strings.TrimSpace(string(rb))
	if len(root) < 12 {
		return fmt.Errorf("rbac-init: root password in %s: %d characters, want at least 12", *rootFile, len(root))
	}
	ub, err := os.ReadFile(*usersFile)
	if err != nil {
		return fmt.Errorf("rbac-init: %w", err)
	}
	users, err := parseRBACUsers(*usersFile, ub)
	if err != nil {
		return err
	}
	tc, err := etcdtls.Files{Cert: *cert, Key: *key, CA: *ca}.Config()
	if err != nil {
		return err
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: strings.Split(*endpoints, ","), TLS: tc, Username: *user, Password: *password,
		DialTimeout: 30 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		return fmt.Errorf("rbac-init: etcd: %w", err)
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := etcdstore.InitRBAC(ctx, cli, "", root, users); err != nil {
		return fmt.Errorf("rbac-init: %w", err)
	}
	fmt.Fprintf(stderr, "mapsrv rbac-init: roles %s and %s on %s, %d users, authentication enabled\n", etcdstore.RoleWriter, etcdstore.RoleReader, etcdstore.DefaultRBACPrefix, len(users))
	return nil
}

func parseRBACUsers(path string, b []byte) ([]etcdstore.RBACUser, error) {
	var users []etcdstore.RBACUser
	sc := bufio.NewScanner(bytes.NewReader(b))
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		if len(f) < 2 || len(f) > 3 || (f[1] != etcdstore.RoleWriter && f[1] != etcdstore.RoleReader) {
			return nil, fmt.Errorf("rbac-init: users file %s line %d: want \"<name> <%s|%s> [<password>]\"", path, n, etcdstore.RoleWriter, etcdstore.RoleReader)
		}
		u := etcdstore.RBACUser{Name: f[0], Role: f[1]}
		if len(f) == 3 {
			u.Password = f[2]
		}
		users = append(users, u)
	}
	if len(users) == 0 {
		return nil, fmt.Errorf("rbac-init: users file %s: no user", path)
	}
	return users, nil
}

// embeddedRBAC turns on authentication in the embedded etcd with the
// least-privilege roles (--etcd-rbac-users) and makes ccfg connect as
// mapsrv's user. It runs at every start: as root once authentication is
// on.
func embeddedRBAC(ctx context.Context, cfg *config, endpoints []string, ccfg *clientv3.Config, log *slog.Logger) error {
	if cfg.rbacUsers == "" {
		return nil
	}
	rb, err := os.ReadFile(cfg.rbacRootFile)
	if err != nil {
		return fmt.Errorf("--etcd-root-password-file: %w", err)
	}
	root := strings.TrimSpace(string(rb))
	if len(root) < 12 {
		return fmt.Errorf("--etcd-root-password-file %s: %d characters, want at least 12", cfg.rbacRootFile, len(root))
	}
	ub, err := os.ReadFile(cfg.rbacUsers)
	if err != nil {
		return fmt.Errorf("--etcd-rbac-users: %w", err)
	}
	users, err := parseRBACUsers(cfg.rbacUsers, ub)
	if err != nil {
		return err
	}
	me := cfg.etcdUser
	if me == "" {
		me = "mapsrv"
	}
	var password string
	for _, u := range users {
		if u.Name == me && u.Role == etcdstore.RoleWriter {
			password = u.Password
		}
	}
	if password == "" {
		return fmt.Errorf("--etcd-rbac-users %s: no %s user %q with a password for mapsrv itself", cfg.rbacUsers, etcdstore.RoleWriter, me)
	}
	base := clientv3.Config{Endpoints: endpoints, DialTimeout: 30 * time.Second, Logger: zap.NewNop()}
	asRoot := base
	asRoot.Username, asRoot.Password = "root", root
	cli, err := clientv3.New(asRoot)
	if errors.Is(err, rpctypes.ErrAuthNotEnabled) {
		cli, err = clientv3.New(base) // the first start: authentication is off
	}
	if err != nil {
		return fmt.Errorf("etcd rbac: %w", err)
	}
	defer cli.Close()
	ictx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := etcdstore.InitRBAC(ictx, cli, "", root, users); err != nil {
		return err
	}
	log.Info("etcd authentication on", "user", me, "users", len(users))
	ccfg.Username, ccfg.Password = me, password
	return nil
}
