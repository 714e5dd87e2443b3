package devstack

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// newPostgres describes a private Postgres 15 cluster in home.dir
// (DataDir/postgres unless the postgres user cannot reach it; see
// locatePostgres), listening on 127.0.0.1 only, with password authentication
// over TCP.
func newPostgres(opts Options, binDir string, home pgHome) *service {
	dir := home.dir
	s := &service{
		name:    "postgres",
		ports:   []int{opts.PostgresPort},
		exe:     filepath.Join(binDir, "postgres"),
		dir:     dir,
		pidFile: filepath.Join(dir, "postmaster.pid"),
		logFile: filepath.Join(opts.DataDir, "logs", "postgres.log"),
		stopSig: syscall.SIGINT, // "fast" shutdown: roll back clients, checkpoint, exit
		timeout: 60 * time.Second,
		hint: func(int) string {
			return "choose another port in postgres.url (INSTRUCTFLOW_POSTGRES_URL or --postgres-url)"
		},
	}
	s.prepare = func(ctx context.Context) error { return initCluster(ctx, opts, binDir, home) }
	s.command = func() *exec.Cmd {
		cmd := exec.Command(filepath.Join(binDir, "postgres"),
			"-D", dir,
			"-p", strconv.Itoa(opts.PostgresPort),
			"-c", "listen_addresses=127.0.0.1",
			"-c", "unix_socket_directories="+dir,
		)
		cmd.SysProcAttr = asPostgresUser()
		return cmd
	}
	connect := func(ctx context.Context, db string) (*pgx.Conn, error) {
		cfg, err := pgx.ParseConfig("")
		if err != nil {
			return nil, err
		}
		cfg.Host, cfg.Port = "127.0.0.1", uint16(opts.PostgresPort)
		cfg.User, cfg.Password, cfg.Database = opts.PostgresUser, opts.PostgresPassword, db
		cfg.TLSConfig = nil
		return pgx.ConnectConfig(ctx, cfg)
	}
	s.ready = func(ctx context.Context) error {
		conn, err := connect(ctx, "postgres")
		if err != nil {
			var pgErr *pgconn.PgError
			if errors.As(err, &pgErr) && (pgErr.Code == "28P01" || pgErr.Code == "28000") {
				return permanent(fmt.Errorf("the cluster in %s rejects its superuser %q with the password of postgres.owner_url: it was created with other credentials (or by an InstructFlow from before the owner and runtime roles); fix postgres.owner_url or remove %s to start afresh", dir, opts.PostgresUser, dir))
			}
			return err
		}
		defer conn.Close(ctx)
		return conn.Ping(ctx)
	}
	s.after = func(ctx context.Context) error {
		conn, err := connect(ctx, "postgres")
		if err != nil {
			return fmt.Errorf("connect: %w", err)
		}
		defer conn.Close(ctx)
		return setUpRoles(ctx, conn, opts)
	}
	return s
}

// initCluster runs initdb once: the superuser is the configured user, local
// socket connections are trusted, TCP connections need the password.
func initCluster(ctx context.Context, opts Options, binDir string, home pgHome) error {
	dir := home.dir
	if _, err := os.Stat(filepath.Join(dir, "PG_VERSION")); err == nil {
		return nil
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	pwFile := filepath.Join(home.pwDir, ".postgres-password")
	if err := os.WriteFile(pwFile, []byte(opts.PostgresPassword+"\n"), 0o600); err != nil {
		return err
	}
	defer os.Remove(pwFile)
	for _, p := range []string{dir, pwFile} {
		if err := chownToPostgres(p); err != nil {
			return err
		}
	}
	cmd := exec.CommandContext(ctx, filepath.Join(binDir, "initdb"),
		"-D", dir, "-U", opts.PostgresUser, "--pwfile", pwFile,
		"--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8", "--no-locale")
	cmd.SysProcAttr = asPostgresUser()
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("initdb %s: %w\n%s", dir, err, out)
	}
	return nil
}

// asPostgresUser drops to the postgres user when running as root, since
// Postgres refuses to run as root.
func asPostgresUser() *syscall.SysProcAttr {
	if os.Geteuid() != 0 {
		return nil
	}
	uid, gid, err := postgresIDs()
	if err != nil {
		return nil // the start fails with Postgres's own message about root
	}
	return &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: gid}}
}

func chownToPostgres(path string) error {
	if os.Geteuid() != 0 {
		return nil
	}
	uid, gid, err := postgresIDs()
	if err != nil {
		return err
	}
	return os.Chown(path, int(uid), int(gid))
}

func postgresIDs() (uid, gid uint32, err error) {
	a, err := postgresAccount()
	return a.uid, a.gid, err
}
