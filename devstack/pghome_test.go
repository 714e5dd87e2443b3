package devstack

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/instructflow/instructflow/config"
	"github.com/instructflow/instructflow/internal/testenv"
)

// TestPostgresStartsUnderAPrivateParent is the quickstart as root with the
// data dir under a 0700 folder (root's home, `mktemp -d`): the real Postgres
// starts, accepts connections, and keeps its data across a restart.
func TestPostgresStartsUnderAPrivateParent(t *testing.T) {
	testenv.Config(t) // integration only: needs the installed Postgres
	dataDir := privateParent(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	cfg := config.Default()
	cfg.DataDir = dataDir
	cfg.Postgres.URL = fmt.Sprintf("postgres://instructflow:pw-%d@127.0.0.1:%d/instructflow?sslmode=disable", port, port)
	cfg.Postgres.OwnerURL = fmt.Sprintf("postgres://instructflow_owner:owner-%d@127.0.0.1:%d/instructflow?sslmode=disable", port, port)
	var log strings.Builder
	opts, err := OptionsFrom(cfg, &log)
	if err != nil {
		t.Fatal(err)
	}
	if opts.DataDir, err = prepareDataDir(opts.DataDir); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	start := func() *service {
		t.Helper()
		home, err := locatePostgres(opts.DataDir, &log)
		if err != nil {
			t.Fatal(err)
		}
		s := newPostgres(opts, PostgresBinDir, home)
		if err := s.start(ctx); err != nil {
			t.Fatalf("postgres with its data dir under a 0700 folder: %v", err)
		}
		t.Cleanup(func() { s.stop(context.Background()) })
		return s
	}
	whoami := func() (string, error) {
		conn, err := pgx.Connect(ctx, cfg.Postgres.URL)
		if err != nil {
			return "", err
		}
		defer conn.Close(ctx)
		var user string
		err = conn.QueryRow(ctx, "SELECT current_user").Scan(&user)
		return user, err
	}
	// initdb writes PG_VERSION once: the same file after a restart means the
	// same cluster, not a fresh one.
	clusterID := func(s *service) uint64 {
		st, err := os.Stat(filepath.Join(s.dir, "PG_VERSION"))
		if err != nil {
			t.Fatal(err)
		}
		return st.Sys().(*syscall.Stat_t).Ino
	}

	s := start()
	if got, err := whoami(); err != nil || got != "instructflow" {
		t.Fatalf("connect: %q, %v", got, err)
	}
	if !strings.HasPrefix(s.dir, sharedRoot+"/") {
		t.Errorf("cluster in %s, want it under %s", s.dir, sharedRoot)
	}
	if _, err := os.Stat(filepath.Join(opts.DataDir, locationFile)); err != nil {
		t.Errorf("the data dir does not record where its cluster is: %v", err)
	}
	first := clusterID(s)
	if err := s.stop(ctx); err != nil {
		t.Fatal(err)
	}

	again := start()
	if got, err := whoami(); err != nil || got != "instructflow" {
		t.Errorf("connect after a restart: %q, %v", got, err)
	}
	if again.dir != s.dir || clusterID(again) != first {
		t.Errorf("after a restart the cluster is %s (PG_VERSION inode %d), want the same cluster %s (inode %d)", again.dir, clusterID(again), s.dir, first)
	}
}
